"""Fingerprints of what pymem ships in a database, for ``pymem doctor``.

Each object pymem creates, and each setting its isolation rests on, gets one line:
a name (``function pymem.write_chunks(...)``, ``policy memory_chunks.tenant_isolation``)
and the sha256 of a canonical text of it, computed by the server. The same query on a
freshly migrated database writes ``pymem/sql/released/<revision>.fingerprints``
(``pymem-dev sql docs``; a test checks it), and doctor compares a server with that
file: changed, missing and added objects are reported by name.

What is covered: every function in schema ``pymem`` (``pg_get_functiondef()``, its
grants and its owner); each table's owner, persistence, row-security flags, grants
and inheritance; each column's type, collation, default and column grants (the
embedding's dimension left out: it differs between deployments); the constraints,
policies, triggers and rules on pymem's tables; the schema's owner and grants; the
attributes of the four pymem roles and which roles they are members of; event
triggers (Citus's own excepted); and the pgvector functions pymem's searches and
writes go through (the type's I/O, ``<=>``, the HNSW support functions), with
the C symbol each runs.

Besides the fingerprints: objects that someone added to ``pg_catalog`` outside an
extension, and stored settings (``ALTER ROLE/DATABASE ... SET``) that switch
pymem's triggers off, preload code or give sessions a tenant.

Not covered: indexes (a bulk load drops and rebuilds them), data, objects outside
schema ``pymem`` that do not touch pymem's (a view a superuser owns, a publication),
and PostgreSQL's own functions. Every answer comes from the server: this detects
changes made through SQL, not a server that lies about its own catalog, nor
replaced built-in functions, which doctor's own queries call too.
"""

from __future__ import annotations

import psycopg

from . import migrations

# Names are printed as the search path lets them (regprocedure, pg_get_functiondef):
# it is pinned, so every server prints the same text. Owners' own privileges are left
# out of tables' grants (PostgreSQL 17 added MAINTAIN to them); PostgreSQL 18's NOT
# NULL constraints are left out of the constraints (the columns say NOT NULL).
_OBJECTS_SQL = """
WITH tables AS (
    SELECT c.* FROM pg_catalog.pg_class c
     WHERE c.relnamespace = pg_catalog.to_regnamespace('pymem') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
), pgvector_used(what, fn) AS (
    SELECT 'type vector ' || io.what, io.fn
      FROM pg_catalog.pg_type t,
           LATERAL (VALUES ('input', t.typinput), ('output', t.typoutput), ('receive', t.typreceive),
                           ('send', t.typsend), ('typmod input', t.typmodin), ('typmod output', t.typmodout),
                           ('analyze', t.typanalyze)) AS io(what, fn)
     WHERE t.oid = pg_catalog.to_regtype('public.vector')
    UNION ALL
    SELECT 'operator <=>', o.oprcode FROM pg_catalog.pg_operator o
     WHERE o.oid = pg_catalog.to_regoperator('public.<=>(public.vector, public.vector)')
    UNION ALL
    SELECT 'cast vector to vector', c.castfunc FROM pg_catalog.pg_cast c
     WHERE c.castsource = pg_catalog.to_regtype('public.vector') AND c.casttarget = c.castsource
    UNION ALL
    SELECT 'hnsw vector_cosine_ops support ' || ap.amprocnum, ap.amproc
      FROM pg_catalog.pg_amproc ap
      JOIN pg_catalog.pg_opfamily f ON f.oid = ap.amprocfamily AND f.opfname = 'vector_cosine_ops'
      JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod AND am.amname = 'hnsw'
), objects(name, body) AS (
    SELECT 'function ' || p.oid::pg_catalog.regprocedure::pg_catalog.text,
           pg_catalog.concat_ws(E'\\n',
               CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_catalog.pg_get_functiondef(p.oid)
                    ELSE 'kind ' || p.prokind::pg_catalog.text END,
               p.proacl::pg_catalog.text, pg_catalog.pg_get_userbyid(p.proowner))
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = pg_catalog.to_regnamespace('pymem')
    UNION ALL
    SELECT 'table ' || c.relname,
           pg_catalog.format('%s|%s|%s|%s|%s|grants %s|parents %s|children %s',
               pg_catalog.pg_get_userbyid(c.relowner), c.relkind, c.relpersistence, c.relrowsecurity,
               c.relforcerowsecurity,
               (SELECT pg_catalog.string_agg(a.grantee::pg_catalog.regrole::pg_catalog.text || ':' || a.privilege_type,
                                             ',' ORDER BY 1)
                  FROM pg_catalog.aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner),
               (SELECT pg_catalog.string_agg(i.inhparent::pg_catalog.regclass::pg_catalog.text, ',' ORDER BY 1)
                  FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid),
               (SELECT pg_catalog.string_agg(i.inhrelid::pg_catalog.regclass::pg_catalog.text, ',' ORDER BY 1)
                  FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid))
      FROM tables c
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname,
           pg_catalog.format('%s|%s|%s|%s|default %s|grants %s',
               pg_catalog.format_type(a.atttypid, CASE WHEN a.atttypid = pg_catalog.to_regtype('public.vector')
                                                       THEN NULL ELSE a.atttypmod END),
               a.attcollation::pg_catalog.regcollation, a.attnotnull, a.attgenerated,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attacl)
      FROM tables c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || c.relname || '.' || k.conname,
           pg_catalog.format('%s|%s', pg_catalog.pg_get_constraintdef(k.oid), k.convalidated)
      FROM tables c JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid AND k.contype <> 'n'
    UNION ALL
    SELECT 'policy ' || p.tablename || '.' || p.policyname,
           pg_catalog.concat_ws('|', p.permissive, p.roles::pg_catalog.text, p.cmd, p.qual, p.with_check)
      FROM pg_catalog.pg_policies p WHERE p.schemaname = 'pymem'
    UNION ALL
    SELECT 'trigger ' || c.relname || '.' || t.tgname,
           pg_catalog.concat_ws('|', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
      FROM pg_catalog.pg_trigger t JOIN tables c ON c.oid = t.tgrelid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'rule ' || r.tablename || '.' || r.rulename, r.definition
      FROM pg_catalog.pg_rules r WHERE r.schemaname = 'pymem'
    UNION ALL
    SELECT 'schema ' || n.nspname, pg_catalog.concat_ws('|', pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl)
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pymem'
    UNION ALL
    SELECT 'role ' || r.rolname,
           pg_catalog.format('%s|%s|%s|%s|%s|%s|member of %s',
               r.rolsuper, r.rolbypassrls, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
               (SELECT pg_catalog.string_agg(m.roleid::pg_catalog.regrole::pg_catalog.text, ',' ORDER BY 1)
                  FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid))
      FROM pg_catalog.pg_roles r WHERE r.rolname IN ('pymem_owner', 'pymem_app', 'pymem_maintainer', 'pymem_auditor')
    UNION ALL
    SELECT 'event trigger ' || e.evtname,
           pg_catalog.concat_ws('|', e.evtevent, e.evtenabled, e.evtfoid::pg_catalog.regproc)
      FROM pg_catalog.pg_event_trigger e
     WHERE NOT (e.evtname = 'citus_cascade_to_partition'
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                              JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'citus'
                             WHERE d.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
                               AND d.objid = e.oid AND d.deptype = 'e'))
    UNION ALL
    SELECT 'pgvector ' || u.what,
           pg_catalog.format('%s|%s|%s|%s|%s|extension %s',
               p.oid::pg_catalog.regprocedure, l.lanname, p.probin, p.prosrc, p.proisstrict,
               (SELECT x.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid
                 WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e'))
      FROM pgvector_used u
      JOIN pg_catalog.pg_proc p ON p.oid = u.fn
      JOIN pg_catalog.pg_language l ON l.oid = p.prolang)
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
"""

# Objects in pg_catalog resolve before any schema on every search path, pinned ones
# included: an operator or cast added there changes what pymem's SQL means.
# Everything initdb creates has an OID below 16384 (FirstNormalObjectId). An extension's
# objects are its members, or made with one (a table's indexes and row type, a type's
# array type): internal and automatic dependencies lead from those to a member.
_CATALOG_ADDITIONS_SQL = """
WITH RECURSIVE added(kind, name, classid, objid) AS (
    SELECT 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.oid >= 16384
    UNION ALL
    SELECT 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text, 'pg_catalog.pg_operator'::pg_catalog.regclass,
           o.oid
      FROM pg_catalog.pg_operator o WHERE o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND o.oid >= 16384
    UNION ALL
    SELECT 'type', t.oid::pg_catalog.regtype::pg_catalog.text, 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
      FROM pg_catalog.pg_type t WHERE t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.oid >= 16384
    UNION ALL
    SELECT 'relation', c.oid::pg_catalog.regclass::pg_catalog.text, 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_class c WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oid >= 16384
    UNION ALL
    SELECT 'operator class', o.opcname::pg_catalog.text, 'pg_catalog.pg_opclass'::pg_catalog.regclass, o.oid
      FROM pg_catalog.pg_opclass o WHERE o.opcnamespace = 'pg_catalog'::pg_catalog.regnamespace AND o.oid >= 16384
    UNION ALL
    SELECT 'collation', c.collname::pg_catalog.text, 'pg_catalog.pg_collation'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_collation c
     WHERE c.collnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oid >= 16384
    UNION ALL
    SELECT 'cast', pg_catalog.format('(%s AS %s)', c.castsource::pg_catalog.regtype, c.casttarget::pg_catalog.regtype),
           'pg_catalog.pg_cast'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_cast c WHERE c.oid >= 16384
), made_with(kind, name, classid, objid, depth) AS (
    SELECT a.kind, a.name, a.classid, a.objid, 0 FROM added a
    UNION ALL
    SELECT m.kind, m.name, d.refclassid, d.refobjid, m.depth + 1
      FROM made_with m
      JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid AND d.deptype IN ('i', 'a')
     WHERE m.depth < 3)
SELECT a.kind || ' ' || a.name FROM added a
 WHERE NOT EXISTS (SELECT 1 FROM made_with m
                     JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid AND d.deptype = 'e'
                    WHERE m.kind = a.kind AND m.name = a.name)
 ORDER BY 1
"""

# Settings stored for this database or any role that reach into pymem: replica mode
# skips its triggers (the audit log's append-only guard), a preloaded library runs
# code in every session, a default role or tenant context acts for whoever logs in.
# pymem distribute sets the owner's preload of pgvector on Citus.
_STORED_SETTINGS_SQL = """
SELECT pg_catalog.format('%s%s: %s',
           CASE WHEN s.setrole = 0 THEN 'every role' ELSE s.setrole::pg_catalog.regrole::pg_catalog.text END,
           CASE WHEN s.setdatabase = 0 THEN ' in every database' ELSE '' END, cfg.setting)
  FROM pg_catalog.pg_db_role_setting s, LATERAL pg_catalog.unnest(s.setconfig) AS cfg(setting)
 WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT d.oid FROM pg_catalog.pg_database d
                                               WHERE d.datname = pg_catalog.current_database()))
   AND (pg_catalog.split_part(cfg.setting, '=', 1) IN ('session_replication_role', 'session_preload_libraries',
                                                        'local_preload_libraries', 'role', 'session_authorization')
        OR cfg.setting LIKE 'app.%')
   AND NOT (s.setrole = 'pymem_owner'::pg_catalog.regrole AND cfg.setting = 'session_preload_libraries=vector')
 ORDER BY 1
"""

# Who can switch row-level security off or bypass it: superusers, BYPASSRLS roles,
# and whoever can become pymem_owner (it owns the tables).
_ROW_SECURITY_HOLDERS_SQL = """
SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r
 WHERE r.rolcanlogin AND r.rolname <> 'pymem_owner'
   AND (r.rolsuper OR r.rolbypassrls OR pg_catalog.pg_has_role(r.oid, 'pymem_owner', 'MEMBER'))
 ORDER BY 1
"""


def on_server(conn: psycopg.Connection) -> dict[str, str]:
    """Object name -> fingerprint, for everything listed in the module docstring."""
    return dict(_pinned(conn, _OBJECTS_SQL))


def foreign_vector_functions(conn: psycopg.Connection) -> list[str]:
    """pgvector's functions that are not the extension's own C code (replaced, say); empty when none."""
    return _names(conn, _FOREIGN_VECTOR_FUNCTIONS_SQL)


def catalog_additions(conn: psycopg.Connection) -> list[str]:
    """Objects added to ``pg_catalog`` outside any extension (``operator =(...)``); empty when none."""
    return _names(conn, _CATALOG_ADDITIONS_SQL)


def stored_settings(conn: psycopg.Connection) -> list[str]:
    """Stored settings that reach into pymem (``app_login: session_replication_role=replica``); empty when none."""
    return _names(conn, _STORED_SETTINGS_SQL)


def row_security_holders(conn: psycopg.Connection) -> list[str]:
    """Logins that can turn row-level security off: superusers, BYPASSRLS, members of pymem_owner."""
    return _names(conn, _ROW_SECURITY_HOLDERS_SQL)


def _names(conn: psycopg.Connection, query: str) -> list[str]:
    return [row[0] for row in _pinned(conn, query)]


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
