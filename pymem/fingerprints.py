"""Fingerprints of what pymem ships in a database, for ``pymem doctor``.

Each object pymem creates, and each setting its isolation rests on, gets one line:
a name (``function pymem.write_chunks(...)``, ``policy memory_chunks.tenant_isolation``)
and the sha256 of a canonical text of it, computed by the server. The same query on a
freshly migrated database writes ``pymem/sql/released/<revision>.fingerprints``
(``pymem-dev sql docs``; a test checks it), and doctor compares a server with that
file: changed, missing and added objects are reported by name.

What is covered: every function in schema ``pymem`` (``pg_get_functiondef()``, its
grants and its owner); each table's owner, row-security flags and grants; the
policies, triggers and rules on pymem's tables; the schema's owner and grants; the
attributes of the four pymem roles that decide whether row security binds them;
event triggers that no extension installed. Not covered: indexes (a bulk load drops
and rebuilds them), column types (the embedding dimension differs between
deployments), and data. Every answer comes from the server: this detects changes
made through SQL, not a server that lies about its own catalog.
"""

from __future__ import annotations

import psycopg

from . import migrations

# Names are printed as the search path lets them (regprocedure, pg_get_functiondef):
# it is pinned, so every server prints the same text. Owners' own privileges are left
# out of tables' grants (PostgreSQL 17 added MAINTAIN to them).
_OBJECTS_SQL = """
WITH objects(name, body) AS (
    SELECT 'function ' || p.oid::pg_catalog.regprocedure::pg_catalog.text,
           pg_catalog.concat_ws(E'\\n',
               CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_catalog.pg_get_functiondef(p.oid)
                    ELSE 'kind ' || p.prokind::pg_catalog.text END,
               p.proacl::pg_catalog.text, pg_catalog.pg_get_userbyid(p.proowner))
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = pg_catalog.to_regnamespace('pymem')
    UNION ALL
    SELECT 'table ' || c.relname,
           pg_catalog.concat_ws('|', pg_catalog.pg_get_userbyid(c.relowner), c.relkind, c.relrowsecurity,
               c.relforcerowsecurity,
               (SELECT pg_catalog.string_agg(a.grantee::pg_catalog.regrole::pg_catalog.text || ':' || a.privilege_type,
                                             ',' ORDER BY 1)
                  FROM pg_catalog.aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner))
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = pg_catalog.to_regnamespace('pymem') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    UNION ALL
    SELECT 'policy ' || p.tablename || '.' || p.policyname,
           pg_catalog.concat_ws('|', p.permissive, p.roles::pg_catalog.text, p.cmd, p.qual, p.with_check)
      FROM pg_catalog.pg_policies p WHERE p.schemaname = 'pymem'
    UNION ALL
    SELECT 'trigger ' || c.relname || '.' || t.tgname,
           pg_catalog.concat_ws('|', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
      FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = pg_catalog.to_regnamespace('pymem') AND NOT t.tgisinternal
    UNION ALL
    SELECT 'rule ' || r.tablename || '.' || r.rulename, r.definition
      FROM pg_catalog.pg_rules r WHERE r.schemaname = 'pymem'
    UNION ALL
    SELECT 'schema ' || n.nspname, pg_catalog.concat_ws('|', pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl)
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pymem'
    UNION ALL
    SELECT 'role ' || r.rolname,
           pg_catalog.concat_ws('|', r.rolsuper, r.rolbypassrls, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
                                r.rolreplication)
      FROM pg_catalog.pg_roles r WHERE r.rolname IN ('pymem_owner', 'pymem_app', 'pymem_maintainer', 'pymem_auditor')
    UNION ALL
    SELECT 'event trigger ' || e.evtname,
           pg_catalog.concat_ws('|', e.evtevent, e.evtenabled, e.evtfoid::pg_catalog.regproc)
      FROM pg_catalog.pg_event_trigger e
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass AND d.objid = e.oid
                          AND d.deptype = 'e'))
SELECT name, pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(body, 'UTF8')), 'hex') FROM objects
"""

# pymem's searches call pgvector's functions (the <=> operator, vector_send): each
# must be the extension's own, C code from its library (a few are built in).
_FOREIGN_VECTOR_FUNCTIONS_SQL = """
SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                             AND d.deptype = 'e'
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'vector'
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE NOT ((l.lanname = 'c' AND p.probin = '$libdir/vector') OR l.lanname = 'internal')
UNION ALL
SELECT 'the function of operator <=>'
  FROM pg_catalog.pg_operator o
 WHERE o.oid = 'public.<=>(public.vector, public.vector)'::pg_catalog.regoperator
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'vector'
                   WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = o.oprcode
                     AND d.deptype = 'e')
"""


def on_server(conn: psycopg.Connection) -> dict[str, str]:
    """Object name -> fingerprint, for everything listed in the module docstring."""
    return dict(_pinned(conn, _OBJECTS_SQL))


def foreign_vector_functions(conn: psycopg.Connection) -> list[str]:
    """pgvector's functions that are not the extension's own C code (replaced, say); empty when none."""
    return [row[0] for row in _pinned(conn, _FOREIGN_VECTOR_FUNCTIONS_SQL)]


def _pinned(conn: psycopg.Connection, query: str) -> list[tuple]:
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        return conn.execute(query).fetchall()


def shipped(revision: str) -> dict[str, str]:
    """Object name -> fingerprint of what this pymem ships at ``revision`` (empty when none are shipped)."""
    path = migrations.SQL_DIR / "released" / f"{revision}.fingerprints"
    if not path.is_file():
        return {}
    pairs = (line.split("  ", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name: digest for digest, name in pairs}


def file_text(fingerprints: dict[str, str]) -> str:
    """The text of ``released/<revision>.fingerprints``: one ``sha256  name`` line per object."""
    header = ("# sha256 of each object pymem ships, as `pymem doctor` computes it on a server (pymem/fingerprints.py).\n"
              "# Generated by `pymem-dev sql docs` from a freshly migrated database.\n")
    return header + "".join(f"{digest}  {name}\n" for name, digest in sorted(fingerprints.items()))


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """What differs, one phrase per object, in name order."""
    changed = [f"{name} differs from the shipped one" for name in sorted(expected)
               if name in found and found[name] != expected[name]]
    missing = [f"{name} is missing" for name in sorted(set(expected) - set(found))]
    added = [f"{name} is not pymem's" for name in sorted(set(found) - set(expected))]
    return changed + missing + added
