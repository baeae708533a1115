"""``pymem doctor``: check a deployment: the schema against what this pymem ships, and the
hardening of the app's login that SQL migrations cannot impose.

The schema: pymem's roles must exist and own it (a database restored without them,
:mod:`pymem.restores`, is reported with the fix); the database must be at this pymem's
head revision, and every object
:mod:`pymem.fingerprints` covers (functions, tables and their columns, constraints,
policies, triggers, the pymem roles, event triggers, the pgvector functions pymem
uses) must be the one shipped; pgvector's functions must be the extension's own;
nothing may reach in from outside the schema (an object added to ``pg_catalog``, a
trigger elsewhere running pymem's functions, an object a pymem role owns elsewhere, a
stored setting that switches pymem's triggers off, preloads code or sets a tenant).
A function replaced after migrating (a superuser's ``CREATE OR REPLACE FUNCTION``),
a policy loosened, a column's type or grants changed, a trigger added, ``pymem_owner``
made ``BYPASSRLS``: each is reported by name. Doctor also lists the logins that can
get past row-level security, and those that can act as a maintainer or the auditor,
for the DBA to confirm. The answers come from the server, so this detects changes
made through SQL, not a server that lies about its catalog.

The login: migrations own pymem's schema, not the database's or the roles' other
privileges. These matter to pymem's isolation:

* ``TEMPORARY`` on the database, which PostgreSQL grants to PUBLIC by default. A
  session that can create temporary types, functions or tables can leave them on
  a pooled server connection. pymem schema-qualifies every name it sends and
  pools should reset connections, but refusing TEMP to the app's login removes the
  whole class of attack. It comes through PUBLIC, so the fix is
  ``REVOKE TEMPORARY ON DATABASE <db> FROM PUBLIC`` and granting it back to the
  roles that need it.
* Membership: the app's login must have ``pymem_app`` and reach no other role
  (``pymem_owner`` can turn row security off, the maintainer and the auditor read
  every tenant, ``pg_read_all_stats`` shows every session's query text, tenant
  contexts included, ``pg_read_all_data`` reads the tables past the API and its
  audit); and neither it nor any role it can become may be a superuser, bypass
  RLS or have REPLICATION (which copies the data files).
* Settings stored for the login (``pg_db_role_setting``), which the login can make
  itself and which every new session, pooled ones included, starts with. pymem's
  transactions pin the timeouts such a setting could use to fail every call
  (:mod:`pymem.pins`); doctor reports any stored setting by name.
* The server's log: a tenant's proof is a bind parameter of each tenant transaction,
  so a server that logs statements with their parameters writes it where whoever
  reads the log finds it.
* On Citus, the workers report no query text (``track_activities = off``, set by
  ``pymem distribute``): the tenant context tickets reach them as query text.
* The database: pymem's own, with ``CONNECT`` not granted to PUBLIC. The statistics
  views show every login that may connect the size of each bucket graph and how
  often it was searched and written: for a large tenant, an activity log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from . import fingerprints, migrations
from .distribute import chunks_distributed, citus_installed, workers_showing_query_text
from .errors import MigrationRefused, PymemError
from .restores import FIX, RESTORE_CHECK_SQL, restore_problems
from .root_keys import provider
from .solo_graphs import plan_solo_graphs


@dataclass(frozen=True)
class Finding:
    """One check: its name, whether it passed, and what to do if not."""

    check: str
    ok: bool
    detail: str


# Through any chain of memberships (pg_has_role ... MEMBER), NOLOGIN roles included:
# a login granted a NOLOGIN superuser role can SET ROLE to it.
_CHECKS_SQL = """
SELECT pg_catalog.pg_has_role(r.oid, 'pymem_app', 'MEMBER'),
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles s
                WHERE (s.rolsuper OR s.rolbypassrls OR s.rolreplication)
                  AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')),
       ARRAY(SELECT s.rolname::pg_catalog.text FROM pg_catalog.pg_roles s
              WHERE s.oid <> r.oid AND s.rolname <> 'pymem_app' AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')
              ORDER BY 1),
       pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'TEMPORARY'),
       pg_catalog.has_schema_privilege(r.oid, 'public', 'CREATE'),
       pg_catalog.current_database(),
       ARRAY(SELECT DISTINCT pg_catalog.split_part(c.setting, '=', 1)
               FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(setting)
              WHERE s.setrole = r.oid
                AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                                           WHERE d.datname = pg_catalog.current_database()))
              ORDER BY 1),
       (pg_catalog.current_setting('log_statement') = 'all'
        OR pg_catalog.current_setting('log_min_duration_statement')::pg_catalog.int4 >= 0
        OR pg_catalog.current_setting('log_min_duration_sample')::pg_catalog.int4 >= 0)
       AND pg_catalog.current_setting('log_parameter_max_length')::pg_catalog.int4 <> 0,
       EXISTS (SELECT 1 FROM pg_catalog.pg_database d,
                      pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
                WHERE d.datname = pg_catalog.current_database() AND a.grantee = 0 AND a.privilege_type = 'CONNECT'),
       ARRAY(SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f')
                AND n.nspname NOT IN ('pymem', 'pg_catalog', 'information_schema', 'pg_toast')
                AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
                AND NOT (n.nspname = 'public' AND c.relname = 'alembic_version')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
                                 WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                   AND dep.objid = c.oid AND dep.deptype = 'e')
              ORDER BY 1 LIMIT 5)
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
    restored = restore_problems(conn.execute(RESTORE_CHECK_SQL).fetchone()) if at else []
    if restored:
        return [Finding("pymem's roles own the schema", False, f"{'; '.join(restored)}: {FIX}")]
    if at != head:
        where = f"is at revision {at}" if at else "has no pymem schema yet"
        return [Finding("schema revision", False, f"the database {where}; this pymem ships {head}: run pymem migrate")]
    expected = fingerprints.grouped(fingerprints.shipped(head))
    found = fingerprints.grouped(fingerprints.on_server(conn))
    foreign = fingerprints.foreign_vector_functions(conn)
    reaching_in = fingerprints.catalog_additions(conn) + fingerprints.stored_settings(conn)
    past_row_security = fingerprints.past_row_security(conn)
    operators = fingerprints.operator_logins(conn)
    return [
        Finding("schema revision", True, f"at {head}"),
        _compared("function definitions", expected["function"], found["function"],
                  f"all {{n}} functions are the ones revision {head} ships", "pymem migrate --reapply-functions"),
        _compared("tables, policies, triggers and roles", expected["schema"], found["schema"],
                  f"all {{n}} are as revision {head} made them", "restore them by hand: docs/schema.sql has them"),
        _compared("pgvector's functions", expected["pgvector"], found["pgvector"], "the extension's own",
                  "reinstall the extension", extra=[f"{name} is not pgvector's own code" for name in foreign]),
        Finding("nothing reaches in from outside the schema", not reaching_in,
                "nothing added to pg_catalog, no trigger or object of pymem's elsewhere, no stored setting that"
                " reaches pymem" if not reaching_in else
                "; ".join(reaching_in) + ": find out who added them, then drop them (ALTER ROLE/DATABASE ... RESET"
                " for settings)"),
        Finding("who can get past row security", True,
                ", ".join(past_row_security) + " (superusers, BYPASSRLS, REPLICATION and pymem_owner, through any"
                " membership: confirm each)"),
        Finding("who can act as a maintainer or the auditor", True,
                (", ".join(operators) if operators else "no login but superusers") + " (confirm each)"),
    ]


def check_solo_graphs(conn: psycopg.Connection) -> Finding:
    """Whether every tenant of ``solo_graph_min_rows`` rows or more has its own graph
    (revision 0017): without one, a neighbour can slow its searches (A7)."""
    check = "large tenants have solo graphs"
    try:
        plan = plan_solo_graphs(conn)
    except psycopg.errors.InsufficientPrivilege:
        return Finding(check, False, "not checked: reading pymem.key_stats needs a superuser or pymem_owner")
    beyond = (f"; {plan.left_out} more beyond solo_graph_max_count ({plan.max_count}) have none"
              if plan.left_out else "")
    if plan.build or plan.drop:
        return Finding(check, False, f"{len(plan.build)} tenants of {plan.min_rows}+ rows have none and"
                                     f" {len(plan.drop)} solo graphs are stale or invalid{beyond}:"
                                     " run pymem solo-graphs")
    return Finding(check, True, f"{plan.kept} solo graphs, one per tenant of {plan.min_rows}+ rows{beyond}")


def check_keys(conn: psycopg.Connection) -> list[Finding]:
    """The root-key provider and the key new data keys are wrapped under; whether every
    data key is under it (else a root rotation is unfinished) and every row under a
    tenant data key (else rows written before revision 0019 wait for ``pymem rotate-key``)."""
    try:
        current = provider().current()
        findings = [Finding("root-key provider", True, f"new data keys are wrapped under {current}")]
    except (PymemError, ValueError, ImportError) as error:
        # Doctor is the DBA's, who need not hold the app's keys or the provider's settings.
        current, findings = None, [Finding("root-key provider", True, f"not checked here ({error})")]
    try:
        roots = conn.execute("SELECT root_key, data_keys, tenants FROM pymem.root_key_usage()").fetchall()
        ring = conn.execute("SELECT coalesce(sum(live_rows), 0) FROM pymem.key_usage() WHERE key_id > 0").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        return findings + [Finding("data keys", False, "not checked: needs pymem_maintainer or pymem_auditor")]
    if current is not None:
        older = [(root, n, tenants) for root, n, tenants in roots if root != current and n]
        findings.append(Finding("data keys under the current root key", not older, "all of them" if not older else
                                "; ".join(f"{n} of {tenants} tenants under {root}" for root, n, tenants in older)
                                + ": run pymem rotate-root-key"))
    findings.append(Finding("rows under tenant data keys", not ring[0], "all of them" if not ring[0] else
                            f"{ring[0]} rows are sealed under a key of the environment's ring (written before"
                            " revision 0019): run pymem rotate-key"))
    return findings


def _compared(check: str, expected: dict[str, str], found: dict[str, str], ok: str, fix: str,
              extra: Sequence[str] = ()) -> Finding:
    problems = fingerprints.differences(expected, found) if expected else ["no fingerprints are shipped"]
    problems = [*problems, *extra]
    if not problems:
        return Finding(check, True, ok.format(n=len(expected)))
    return Finding(check, False, "; ".join(problems) + f": find out who changed them (the server log), then {fix}")


def _on_citus(conn: psycopg.Connection) -> list[Finding]:
    """On a distributed database: whether the workers hide the query text Citus forwards."""
    if not (citus_installed(conn) and chunks_distributed(conn)):
        return []
    showing = workers_showing_query_text(conn)
    return [Finding("workers show no query text", not showing,
                    "ok" if not showing else
                    f"{', '.join(showing)} report query text, where every session of the app's login sees the"
                    " tenant context tickets Citus forwards: run pymem distribute")]


def check_deployment(conn: psycopg.Connection, role: str) -> list[Finding]:
    """Check the app's login ``role`` against the deployment rules above.

    Raises:
        ValueError: no such role.
    """
    row = conn.execute(_CHECKS_SQL, (role,)).fetchone()
    if row is None:
        raise ValueError("no such role")
    (app, powerful, other_roles, temp, create_public, database, stored, logged_parameters, public_connect,
     other_tables) = row
    return _on_citus(conn) + [
        Finding("app role", app, "has pymem_app" if app else "GRANT pymem_app TO the app's login role"),
        Finding("no superuser, BYPASSRLS or REPLICATION", not powerful,
                "ok" if not powerful else
                "superusers and BYPASSRLS roles skip row-level security, REPLICATION copies the data files:"
                " use an ordinary login for the app, granted no role that has them"),
        Finding("no role but pymem_app", not other_roles,
                "ok" if not other_roles else
                f"REVOKE {', '.join(other_roles)} FROM the app's login: it needs pymem_app only (pymem_owner turns"
                " row security off, the maintainer and the auditor read every tenant, pg_read_all_stats shows"
                " every session's queries; use separate operator and auditor logins)"),
        Finding("no temporary objects", not temp,
                "ok" if not temp else
                f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC (grant it back to roles that need it)"),
        Finding("no CREATE in schema public", not create_public,
                "ok" if not create_public else "REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        Finding("no settings stored for the login", not stored,
                "ok" if not stored else
                f"{', '.join(stored)} stored for it (ALTER ROLE ... SET, which the login may do to itself and which"
                " outlives DISCARD ALL): find out who set them, then ALTER ROLE <login> RESET ALL and ALTER ROLE"
                f" <login> IN DATABASE {database} RESET ALL"),
        Finding("no statement logged with its parameters", not logged_parameters,
                "ok" if not logged_parameters else
                "the server logs statements with their bind parameters (log_statement = all or a"
                " log_min_duration_* >= 0): each tenant transaction's proof would be in the log, and whoever reads"
                " it could act as that tenant; set log_parameter_max_length = 0, or log less"),
        Finding("a database of pymem's own, not open to PUBLIC", not (public_connect or other_tables),
                "ok" if not (public_connect or other_tables) else
                "; ".join(([f"REVOKE CONNECT ON DATABASE {database} FROM PUBLIC (grant it to pymem's logins)"]
                           if public_connect else [])
                          + ([f"it holds other applications' tables ({', '.join(other_tables)}): give pymem a"
                              " database of its own"] if other_tables else []))
                + ": every login that may connect reads each bucket graph's size and use in the statistics"
                  " views"),
    ]
