"""``pymem doctor``: check a deployment: the schema against what this pymem ships, and the
hardening of the app's login that SQL migrations cannot impose.

The schema: the database's revision must be this pymem's head, and every function
in schema ``pymem`` must be the shipped one. Each function is fingerprinted on the
server (sha256 of ``pg_get_functiondef()``, its ACL and its owner) and compared with
``pymem/sql/released/<head>.functions``: a function replaced after migrating (by
a superuser's ``CREATE OR REPLACE FUNCTION``, say) or one added to the schema is
reported. The answer comes from the server, so it detects changes made through
SQL, not a server that lies about its catalog.

The login: migrations own pymem's schema, not the database's or the roles' other
privileges. Two of those matter to pymem's isolation:

* ``TEMPORARY`` on the database, which PostgreSQL grants to PUBLIC by default. A
  session that can create temporary types, functions or tables can leave them on
  a pooled server connection. pymem schema-qualifies every name it sends and
  pools should reset connections, but refusing TEMP to the app's login removes the
  whole class of attack. It comes through PUBLIC, so the fix is
  ``REVOKE TEMPORARY ON DATABASE <db> FROM PUBLIC`` and granting it back to the
  roles that need it.
* Membership: the app's login must have ``pymem_app``, and must not be a
  superuser, bypass RLS, or be able to become ``pymem_owner`` or ``pymem_maintainer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from . import migrations


@dataclass(frozen=True)
class Finding:
    """One check: its name, whether it passed, and what to do if not."""

    check: str
    ok: bool
    detail: str


_CHECKS_SQL = """
SELECT r.rolsuper, r.rolbypassrls,
       pg_catalog.pg_has_role(r.oid, 'pymem_app', 'MEMBER'),
       pg_catalog.pg_has_role(r.oid, 'pymem_owner', 'MEMBER'),
       pg_catalog.pg_has_role(r.oid, 'pymem_maintainer', 'MEMBER'),
       pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'TEMPORARY'),
       pg_catalog.has_schema_privilege(r.oid, 'public', 'CREATE'),
       pg_catalog.current_database()
  FROM pg_catalog.pg_roles r WHERE r.rolname = %s
"""


# pg_get_functiondef() and regprocedure name types as the search path lets them:
# pinned, so that every server prints the same text.
_FINGERPRINTS_SQL = """
SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(E'\\n',
           pg_catalog.pg_get_functiondef(p.oid), p.proacl::pg_catalog.text,
           pg_catalog.pg_get_userbyid(p.proowner)), 'UTF8')), 'hex')
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = pg_catalog.to_regnamespace('pymem')
"""

def database_revision(conn: psycopg.Connection) -> str | None:
    """The alembic revision the database is at; None before its first migration."""
    if conn.execute("SELECT pg_catalog.to_regclass('public.alembic_version') IS NULL").fetchone()[0]:
        return None
    return conn.execute("SELECT pg_catalog.max(version_num) FROM public.alembic_version").fetchone()[0]


def server_fingerprints(conn: psycopg.Connection) -> dict[str, str]:
    """Signature -> fingerprint of every function in schema ``pymem`` on the server."""
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        return dict(conn.execute(_FINGERPRINTS_SQL).fetchall())


def shipped_fingerprints(revision: str) -> dict[str, str]:
    """Signature -> fingerprint of every function this pymem ships at ``revision``."""
    path = migrations.SQL_DIR / "released" / f"{revision}.functions"
    lines = path.read_text().splitlines() if path.is_file() else []
    return dict(reversed(line.split(maxsplit=1)) for line in lines if line.strip() and not line.startswith("#"))


def check_schema(conn: psycopg.Connection) -> list[Finding]:
    """The database's revision, and its functions against the shipped ones."""
    head = migrations.head_revision()
    at = database_revision(conn)
    if at != head:
        where = f"is at revision {at}" if at else "has no pymem schema yet"
        return [Finding("schema revision", False, f"the database {where}; this pymem ships {head}: run pymem migrate")]
    shipped = shipped_fingerprints(head)
    server = server_fingerprints(conn)
    changed = sorted(sig for sig in shipped if sig in server and server[sig] != shipped[sig])
    missing = sorted(set(shipped) - set(server))
    added = sorted(set(server) - set(shipped))
    problems = ([f"{sig} differs from the shipped definition" for sig in changed]
                + [f"{sig} is missing" for sig in missing] + [f"{sig} is not pymem's" for sig in added])
    ok = bool(shipped) and not problems
    detail = (f"all {len(shipped)} functions are the ones revision {head} ships" if ok else
              "; ".join(problems or ["no fingerprints shipped for revision " + head])
              + ": find out who changed them (the server log), then pymem migrate --reapply-functions")
    return [Finding("schema revision", True, f"at {head}"), Finding("function definitions", ok, detail)]


def check_deployment(conn: psycopg.Connection, role: str) -> list[Finding]:
    """Check the app's login ``role`` against the deployment rules above.

    Raises:
        ValueError: no such role.
    """
    row = conn.execute(_CHECKS_SQL, (role,)).fetchone()
    if row is None:
        raise ValueError("no such role")
    superuser, bypassrls, app, owner, maintainer, temp, create_public, database = row
    return [
        Finding("app role", app, "has pymem_app" if app else "GRANT pymem_app TO the app's login role"),
        Finding("no superuser or BYPASSRLS", not (superuser or bypassrls),
                "ok" if not (superuser or bypassrls) else "superusers and BYPASSRLS roles skip row-level security"),
        Finding("cannot become the owner or a maintainer", not (owner or maintainer),
                "ok" if not (owner or maintainer) else
                "revoke pymem_owner / pymem_maintainer from the app's login: use a separate operator login"),
        Finding("no temporary objects", not temp,
                "ok" if not temp else
                f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC (grant it back to roles that need it)"),
        Finding("no CREATE in schema public", not create_public,
                "ok" if not create_public else "REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
    ]
