"""``pymem doctor``: check the hardening of a deployment that SQL migrations cannot impose.

Migrations own pymem's schema, not the database's or the roles' other privileges.
Two of those matter to pymem's isolation:

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
