"""What a refused command or tool call prints (pymem.failures): one line, and "cannot reach the
database" only for a connection failure (the model-driving attack review of 0021 saw a
serialization failure's text reach the model under that label)."""

from __future__ import annotations

import psycopg

from pymem.failures import expected_failure


def test_only_a_connection_failure_says_the_database_cannot_be_reached():
    connection = psycopg.OperationalError('connection to server at "db.internal" failed')
    assert expected_failure(connection, "mcp").startswith("cannot reach the database: connection to server at")
    assert "db.internal" not in expected_failure(connection, "mcp")


def test_a_concurrent_change_and_other_server_errors_are_not_quoted():
    changed = psycopg.errors.SerializationFailure("pymem: a chunk of this update changed; secret text")
    assert expected_failure(changed, "mcp") == ("the rows changed under another writer meanwhile; nothing was written,"
                                                " try again")
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected: process 42 waits for secret text")
    message = expected_failure(deadlock, "mcp")
    assert "secret" not in message and "cannot reach" not in message and "SQLSTATE 40P01" in message
