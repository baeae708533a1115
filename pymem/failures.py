"""What a refused command or tool call tells its user: one line, never a value that was sent.

Shared by the ``pymem`` command (:mod:`pymem.cli`) and the MCP server (:mod:`pymem.mcp_server`).
"""

from __future__ import annotations

import re

from .errors import PymemError

# What a login lacks when the database refuses a command, and how to grant it.
_ROLE_HINTS = {
    "migrate": "migrating needs a superuser, or a login that may SET ROLE pymem_owner; pymem doctor names any"
               " pymem function another role owns",
    "audit-verify": "GRANT pymem_auditor TO <this login>",
    "audit-checkpoint": "GRANT pymem_auditor TO <this login>",
    "register-key": "GRANT pymem_maintainer TO <this login>",
    "rotate-key": "GRANT pymem_maintainer, pymem_app TO <this login>",
    "key-usage": "GRANT pymem_maintainer TO <this login>",
    "rotate-root-key": "GRANT pymem_maintainer TO <this login>",
    "retire-root-key": "GRANT pymem_maintainer TO <this login>",
    "root-keys": "GRANT pymem_maintainer TO <this login>",
    "rotate-tenant-key": "GRANT pymem_app TO <this login>",
    "index-terms": "GRANT pymem_app TO <this login> (and pymem_maintainer for --all)",
    "solo-graphs": "building indexes needs a superuser, or a login that may SET ROLE pymem_owner",
}


def expected_failure(exc: BaseException, command: str) -> str | None:
    """The one line to print for an expected failure, or None for a bug (which keeps its traceback)."""
    import psycopg
    import sqlalchemy.exc
    from alembic.util import CommandError

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(exc.orig, psycopg.Error):
        exc = exc.orig
    if isinstance(exc, (PymemError, ValueError, ImportError, FileNotFoundError)):
        return str(exc)
    if isinstance(exc, CommandError):
        return f"alembic: {_first_line(exc)} (pymem doctor shows the database's revision)"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        hint = _ROLE_HINTS.get(command, "check the login's pymem roles (pymem doctor --role <login>)")
        return f"the database refused: {_first_line(exc)} ({hint})"
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.InvalidSchemaName):
        return f"the database refused: {_first_line(exc)} (is it migrated? pymem migrate)"
    if isinstance(exc, psycopg.errors.SerializationFailure):
        return "the rows changed under another writer meanwhile; nothing was written, try again"
    if isinstance(exc, psycopg.OperationalError) and (exc.sqlstate is None or exc.sqlstate.startswith("08")):
        # A connection failure (libpq's own, or class 08). libpq quotes what it was given (a
        # host, a user, an option's value): none of it is printed. Other operational errors
        # (deadlocks, cancellations, limits) are the server's messages, and fall through.
        reason = _QUOTED.sub(lambda m: m.group(1) + "..." + m.group(1), _first_line(exc))
        return f"cannot reach the database: {reason} (check PYMEM_DATABASE_URL, or unset it to use the embedded server)"
    if isinstance(exc, psycopg.Error):
        # Not the message: a server's message may quote a value that was sent.
        return f"the database refused (SQLSTATE {exc.sqlstate or 'none'}, {type(exc).__name__})"
    return None


_QUOTED = re.compile(r"""(["'])(?:(?!\1).)*\1""")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
