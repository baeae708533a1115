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

from . import migrations
from .config import get_settings
from .db import embedded_server, ensure_database


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

    def fresh_database(self, name: str, embedding_dim: int = 384, migrate: bool = True) -> str:
        """Drop and recreate ``name``, migrate it to head; return its admin DSN."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        url = ensure_database(self.admin_url, name)
        if migrate:
            migrations.upgrade(url, embedding_dim=embedding_dim)
        return url

    def login_role(self, name: str, member_of: list[str], inherit: bool = True) -> None:
        """Create (or reset) a LOGIN role that is a member of ``member_of``."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS " + ("INHERIT" if inherit else "NOINHERIT"))
                .format(sql.Identifier(name))
            )
            for role in member_of:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))

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



def ephemeral_keys() -> list[str]:
    """Generate any missing MEMORY_* key for this process only; return their names.

    For the demo and benchmarks: keys live in this process's environment and are
    never written anywhere, so what they seal cannot be opened by a later run.
    """
    from .security import generate_key, reload_keys

    generated = []
    for name in ("MEMORY_ENCRYPTION_KEY", "MEMORY_TENANT_HMAC_KEY"):
        if not os.environ.get(name):
            os.environ[name] = generate_key()
            generated.append(name)
    reload_keys()
    return generated
