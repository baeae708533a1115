"""A local database for development: the embedded PostgreSQL, migrated, with an app login.

``pymem local-db`` (needs the ``embedded`` extra) starts the embedded server in
``$PYMEM_HOME/pg<major>`` and leaves it running, creates database ``pymem``,
migrates it, and makes the login an application connects as: ``pymem_local_app``,
a member of ``pymem_app`` and nothing else, with the database's ``TEMPORARY``
privilege revoked from PUBLIC (what ``pymem doctor`` asks of a deployment). The
server listens on a Unix socket in that directory only (mode 0700; a directory too
long to hold the socket is refused), with no TCP port and no passwords: local
connections are trusted, so the OS user who owns the directory may log in as any
role, the superuser included. It is for one developer's machine, never for production.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from . import migrations
from .db import EMBEDDED_DATABASE, embedded_server, embedded_server_running, ensure_database
from .doctor import Finding, check_deployment, check_schema

APP_LOGIN = "pymem_local_app"


@dataclass(frozen=True)
class LocalDatabase:
    """What :func:`start` made: the two DSNs and the doctor's findings for the app login."""

    admin_url: str
    app_url: str
    findings: list[Finding]


def ensure_login_role(admin_dsn: str, name: str, member_of: list[str], inherit: bool = True) -> None:
    """Create (or reset) a LOGIN role that is a member of ``member_of``, through ``admin_dsn``.

    The role is NOSUPERUSER and NOBYPASSRLS, so row security binds it.
    """
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS " + ("INHERIT" if inherit else "NOINHERIT"))
            .format(sql.Identifier(name))
        )
        for role in member_of:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))


def start(embedding_dim: int | None = None) -> LocalDatabase:
    """Start (or reuse) the embedded server, migrate database ``pymem``, create the app login.

    Args:
        embedding_dim: the dimension of a new schema (default 384); an existing
            database keeps its own, and a different one is refused.

    Raises:
        MissingExtra: the ``embedded`` extra is not installed.
        MigrationRefused: ``embedding_dim`` differs from the existing database's.
    """
    server = embedded_server(keep_running=True)
    admin_url = ensure_database(server.get_uri(), EMBEDDED_DATABASE)
    migrations.upgrade(admin_url, embedding_dim=embedding_dim)
    ensure_login_role(admin_url, APP_LOGIN, ["pymem_app"])
    with psycopg.connect(admin_url, autocommit=True) as conn:
        database = sql.Identifier(EMBEDDED_DATABASE)
        conn.execute(sql.SQL("REVOKE TEMPORARY, CONNECT ON DATABASE {} FROM PUBLIC").format(database))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO pymem_app, pymem_maintainer, pymem_auditor,"
                             " pymem_owner").format(database))
        findings = check_schema(conn) + check_deployment(conn, APP_LOGIN)
    return LocalDatabase(admin_url, make_conninfo(admin_url, user=APP_LOGIN), findings)


def stop() -> bool:
    """Stop the embedded server if it runs; whether it was running."""
    server = embedded_server_running()
    if server is None:
        return False
    server.stop()
    return True
