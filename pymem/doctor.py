"""``pymem doctor``: check a deployment: the schema against what this pymem ships, and the
hardening of the app's login that SQL migrations cannot impose.

The schema: the database must be at this pymem's head revision, and every object
:mod:`pymem.fingerprints` covers (functions, tables and their columns, constraints,
policies, triggers, the pymem roles, event triggers, the pgvector functions pymem
uses) must be the one shipped; pgvector's functions must be the extension's own;
nothing may have been added to ``pg_catalog`` outside an extension, and no stored
setting may switch pymem's triggers off, preload code or set a tenant. A function
replaced after migrating (a superuser's ``CREATE OR REPLACE FUNCTION``), a policy
loosened, a column's type or grants changed, a trigger added, ``pymem_owner`` made
``BYPASSRLS``: each is reported by name. Doctor also lists the logins that can turn
row-level security off, for the DBA to confirm. The answers come from the server, so
this detects changes made through SQL, not a server that lies about its catalog.

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
  superuser, bypass RLS, or be able to become ``pymem_owner``, ``pymem_maintainer``
  or ``pymem_auditor``; nor a member of ``pg_read_all_stats`` (``pg_monitor`` includes it), which shows
  every session's query text in ``pg_stat_activity``, tenant contexts included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from . import fingerprints, migrations
from .errors import MigrationRefused


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
       pg_catalog.pg_has_role(r.oid, 'pymem_maintainer', 'MEMBER')
           OR pg_catalog.pg_has_role(r.oid, 'pymem_auditor', 'MEMBER'),
       pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'TEMPORARY'),
       pg_catalog.has_schema_privilege(r.oid, 'public', 'CREATE'),
       pg_catalog.pg_has_role(r.oid, 'pg_read_all_stats', 'MEMBER'),
       pg_catalog.current_database()
  FROM pg_catalog.pg_roles r WHERE r.rolname = %s
"""


def database_revision(conn: psycopg.Connection) -> str | None:
    """The alembic revision the database is at; None before its first migration.

    Raises:
        MigrationRefused: ``alembic_version`` does not hold exactly one revision.
    """
    if conn.execute("SELECT pg_catalog.to_regclass('public.alembic_version') IS NULL").fetchone()[0]:
        return None
    rows = conn.execute("SELECT version_num::pg_catalog.text FROM public.alembic_version").fetchall()
    if len(rows) != 1:
        raise MigrationRefused(f"public.alembic_version holds {len(rows)} revisions instead of one: "
                               "someone edited it; find out who before migrating")
    return rows[0][0]


def check_schema(conn: psycopg.Connection) -> list[Finding]:
    """The database's revision, and what it runs against what this pymem ships."""
    head = migrations.head_revision()
    at = database_revision(conn)
    if at != head:
        where = f"is at revision {at}" if at else "has no pymem schema yet"
        return [Finding("schema revision", False, f"the database {where}; this pymem ships {head}: run pymem migrate")]
    expected = _by_kind(fingerprints.shipped(head))
    found = _by_kind(fingerprints.on_server(conn))
    foreign = fingerprints.foreign_vector_functions(conn)
    reaching_in = fingerprints.catalog_additions(conn) + fingerprints.stored_settings(conn)
    holders = fingerprints.row_security_holders(conn)
    return [
        Finding("schema revision", True, f"at {head}"),
        _compared("function definitions", expected["function"], found["function"],
                  f"all {{n}} functions are the ones revision {head} ships", "pymem migrate --reapply-functions"),
        _compared("tables, policies, triggers and roles", expected["schema"], found["schema"],
                  f"all {{n}} are as revision {head} made them", "restore them by hand: docs/schema.sql has them"),
        _compared("pgvector's functions", expected["pgvector"], found["pgvector"], "the extension's own",
                  "reinstall the extension", extra=[f"{name} is not pgvector's own code" for name in foreign]),
        Finding("nothing reaches in from outside the schema", not reaching_in,
                "no additions to pg_catalog, no stored settings that reach pymem" if not reaching_in else
                "; ".join(reaching_in) + ": find out who added them, then drop them (ALTER ROLE/DATABASE ... RESET"
                " for settings)"),
        Finding("who can turn row security off", True,
                ", ".join(holders) + " (superusers, BYPASSRLS and members of pymem_owner: confirm each)"),
    ]


def _by_kind(fps: dict[str, str]) -> dict[str, dict[str, str]]:
    """The fingerprints grouped as doctor reports them: function, pgvector, schema (the rest)."""
    groups: dict[str, dict[str, str]] = {"function": {}, "pgvector": {}, "schema": {}}
    for name, fp in fps.items():
        kind = name.split(" ", 1)[0]
        groups[kind if kind in groups else "schema"][name] = fp
    return groups


def _compared(check: str, expected: dict[str, str], found: dict[str, str], ok: str, fix: str,
              extra: Sequence[str] = ()) -> Finding:
    problems = fingerprints.differences(expected, found) if expected else ["no fingerprints are shipped"]
    problems = [*problems, *extra]
    if not problems:
        return Finding(check, True, ok.format(n=len(expected)))
    return Finding(check, False, "; ".join(problems) + f": find out who changed them (the server log), then {fix}")


def check_deployment(conn: psycopg.Connection, role: str) -> list[Finding]:
    """Check the app's login ``role`` against the deployment rules above.

    Raises:
        ValueError: no such role.
    """
    row = conn.execute(_CHECKS_SQL, (role,)).fetchone()
    if row is None:
        raise ValueError("no such role")
    superuser, bypassrls, app, owner, maintainer_or_auditor, temp, create_public, all_stats, database = row
    return [
        Finding("app role", app, "has pymem_app" if app else "GRANT pymem_app TO the app's login role"),
        Finding("no superuser or BYPASSRLS", not (superuser or bypassrls),
                "ok" if not (superuser or bypassrls) else "superusers and BYPASSRLS roles skip row-level security"),
        Finding("cannot become the owner, a maintainer or the auditor", not (owner or maintainer_or_auditor),
                "ok" if not (owner or maintainer_or_auditor) else
                "revoke pymem_owner / pymem_maintainer / pymem_auditor from the app's login: use separate"
                " operator and auditor logins"),
        Finding("no temporary objects", not temp,
                "ok" if not temp else
                f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC (grant it back to roles that need it)"),
        Finding("no CREATE in schema public", not create_public,
                "ok" if not create_public else "REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        Finding("cannot read other sessions' queries", not all_stats,
                "ok" if not all_stats else
                "REVOKE pg_read_all_stats, pg_monitor FROM the app's login: they show every session's query text"),
    ]
