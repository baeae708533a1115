"""Fingerprints of what pymem ships in a database, for ``pymem doctor``.

Each object pymem creates, and each setting its isolation rests on, gets one line:
a name (``function pymem.write_chunks(...)``, ``policy memory_chunks.tenant_isolation``)
and the sha256 of a canonical text of it, computed by the server. The same query on a
freshly migrated database writes ``pymem/sql/released/<revision>.fingerprints``
(``pymem-dev sql docs``; a test checks it), and doctor compares a server with that
file: changed, missing and added objects are reported by name.

What is covered: every function in schema ``pymem`` (``pg_get_functiondef()``, its
grants and its owner); each table's owner, persistence, access method, row-security
flags, grants and inheritance; each column's type, collation, default and column
grants (the embedding's dimension left out: it differs between deployments); the
constraints, policies, triggers and rules on pymem's tables; the schema's owner and
grants; the attributes of the four pymem roles, whether they log in (pymem_owner
aside: it logs in on Citus) and which roles they are members of; event triggers
(Citus's own excepted); and the pgvector functions pymem's searches and writes go
through (the type's I/O, ``<=>``, the HNSW support functions), with the C symbol
each runs.

Besides the fingerprints: what reaches in from outside the schema (objects added to
``pg_catalog``, triggers elsewhere that run pymem's functions, objects the pymem roles
own elsewhere, stored settings (``ALTER ROLE/DATABASE ... SET``) that switch pymem's
triggers off, preload code, give sessions a tenant or commit asynchronously), and the
logins that can get past row security or act as a maintainer or the auditor.

Not covered: indexes (a bulk load drops and rebuilds them), data, objects outside
schema ``pymem`` that do not touch pymem's (a view a superuser owns, a publication),
default privileges, and PostgreSQL's own functions. Every answer comes from the server: this detects
changes made through SQL, not a server that lies about its own catalog, nor
replaced built-in functions, which doctor's own queries call too.
"""

from __future__ import annotations

import psycopg

from . import migrations

_PYMEM_ROLES = "('pymem_owner', 'pymem_app', 'pymem_maintainer', 'pymem_auditor')"

# Names are printed as the search path lets them (regprocedure, pg_get_functiondef):
# it is pinned, so every server prints the same text. Owners' own privileges are left
# out of tables' grants (PostgreSQL 17 added MAINTAIN to them); PostgreSQL 18's NOT
# NULL constraints are left out of the constraints (the columns say NOT NULL).
_OBJECTS_SQL = f"""
WITH tables AS (
    SELECT c.* FROM pg_catalog.pg_class c
     WHERE c.relnamespace = pg_catalog.to_regnamespace('pymem') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
), pgvector_used(what, fn) AS (
    -- vector's, and since revision 0023 halfvec's, which a halfvec schema searches with.
    SELECT 'type ' || t.typname || ' ' || io.what, io.fn
      FROM pg_catalog.pg_type t,
           LATERAL (VALUES ('input', t.typinput), ('output', t.typoutput), ('receive', t.typreceive),
                           ('send', t.typsend), ('typmod input', t.typmodin), ('typmod output', t.typmodout),
                           ('analyze', t.typanalyze)) AS io(what, fn)
     WHERE t.oid IN (pg_catalog.to_regtype('public.vector'), pg_catalog.to_regtype('public.halfvec'))
    UNION ALL
    SELECT CASE WHEN o.oprleft = pg_catalog.to_regtype('public.vector') THEN 'operator <=>'
                ELSE 'operator <=> (halfvec)' END, o.oprcode
      FROM pg_catalog.pg_operator o
     WHERE o.oid IN (pg_catalog.to_regoperator('public.<=>(public.vector, public.vector)'),
                     pg_catalog.to_regoperator('public.<=>(public.halfvec, public.halfvec)'))
    UNION ALL
    SELECT CASE WHEN c.castsource = c.casttarget AND c.castsource = pg_catalog.to_regtype('public.vector')
                THEN 'cast vector to vector'
                ELSE pg_catalog.format('cast %s to %s', src.typname, dst.typname)  -- names, not search-path-relative
           END, c.castfunc
      FROM pg_catalog.pg_cast c
      JOIN pg_catalog.pg_type src ON src.oid = c.castsource
      JOIN pg_catalog.pg_type dst ON dst.oid = c.casttarget
     WHERE c.castsource IN (pg_catalog.to_regtype('public.vector'), pg_catalog.to_regtype('public.halfvec'))
       AND c.casttarget IN (pg_catalog.to_regtype('public.vector'), pg_catalog.to_regtype('public.halfvec'))
    UNION ALL
    SELECT CASE WHEN f.opfname = 'vector_cosine_ops' THEN 'hnsw vector_cosine_ops support ' || ap.amprocnum
                ELSE 'hnsw halfvec_cosine_ops support ' || ap.amprocnum END, ap.amproc
      FROM pg_catalog.pg_amproc ap
      JOIN pg_catalog.pg_opfamily f ON f.oid = ap.amprocfamily AND f.opfname IN ('vector_cosine_ops', 'halfvec_cosine_ops')
                                    AND f.opfnamespace = pg_catalog.to_regnamespace('public')
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
           pg_catalog.format('%s|%s|%s|%s|%s|%s|grants %s|parents %s|children %s',
               pg_catalog.pg_get_userbyid(c.relowner), c.relkind, c.relpersistence,
               (SELECT am.amname FROM pg_catalog.pg_am am WHERE am.oid = c.relam), c.relrowsecurity,
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
               -- The embedding's dimension and type (vector, or halfvec since 0023) are the deployment's.
               CASE WHEN a.atttypid IN (pg_catalog.to_regtype('public.vector'), pg_catalog.to_regtype('public.halfvec'))
                    THEN pg_catalog.format_type(pg_catalog.to_regtype('public.vector'), NULL)
                    ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END,
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
           pg_catalog.format('%s|%s|%s|%s|%s|%s|login %s|member of %s',
               r.rolsuper, r.rolbypassrls, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
               CASE WHEN r.rolname <> 'pymem_owner' THEN r.rolcanlogin END,
               (SELECT pg_catalog.string_agg(m.roleid::pg_catalog.regrole::pg_catalog.text, ',' ORDER BY 1)
                  FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid))
      FROM pg_catalog.pg_roles r WHERE r.rolname IN {_PYMEM_ROLES}
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
# array type): internal and automatic dependencies lead from those to a member. Since a
# superuser can make anything a member (ALTER EXTENSION ... ADD), what could capture
# pymem's own expressions is reported even from an extension: an operator or cast on
# PostgreSQL's own types (or domains), and a function overloading a built-in's name.
# Citus's overloads of built-ins, for its global process ids; pymem calls neither.
_CITUS_OVERLOADS = "('pg_cancel_backend(bigint)', 'pg_terminate_backend(bigint,bigint)')"
_CATALOG_ADDITIONS_SQL = f"""
WITH RECURSIVE own_type(oid) AS (
    SELECT t.oid FROM pg_catalog.pg_type t WHERE t.oid < 16384 OR t.typtype = 'd'
), added(kind, name, classid, objid, captures) AS (
    SELECT 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, 'pg_catalog.pg_proc'::pg_catalog.regclass,
           p.oid, EXISTS (SELECT 1 FROM pg_catalog.pg_proc b
                           WHERE b.proname = p.proname AND b.pronamespace = p.pronamespace AND b.oid < 16384)
                  AND p.oid::pg_catalog.regprocedure::pg_catalog.text NOT IN {_CITUS_OVERLOADS}
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.oid >= 16384
    UNION ALL
    SELECT 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text, 'pg_catalog.pg_operator'::pg_catalog.regclass,
           o.oid, o.oprleft IN (SELECT oid FROM own_type) OR o.oprright IN (SELECT oid FROM own_type)
      FROM pg_catalog.pg_operator o WHERE o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND o.oid >= 16384
    UNION ALL
    SELECT 'type', t.oid::pg_catalog.regtype::pg_catalog.text, 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, false
      FROM pg_catalog.pg_type t WHERE t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.oid >= 16384
    UNION ALL
    SELECT 'relation', c.oid::pg_catalog.regclass::pg_catalog.text, 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid,
           false
      FROM pg_catalog.pg_class c WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oid >= 16384
    UNION ALL
    SELECT 'operator class', o.opcname::pg_catalog.text, 'pg_catalog.pg_opclass'::pg_catalog.regclass, o.oid, false
      FROM pg_catalog.pg_opclass o WHERE o.opcnamespace = 'pg_catalog'::pg_catalog.regnamespace AND o.oid >= 16384
    UNION ALL
    SELECT 'collation', c.collname::pg_catalog.text, 'pg_catalog.pg_collation'::pg_catalog.regclass, c.oid, false
      FROM pg_catalog.pg_collation c
     WHERE c.collnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oid >= 16384
    UNION ALL
    SELECT 'cast', pg_catalog.format('(%s AS %s)', c.castsource::pg_catalog.regtype, c.casttarget::pg_catalog.regtype),
           'pg_catalog.pg_cast'::pg_catalog.regclass, c.oid,
           c.castsource IN (SELECT oid FROM own_type) AND c.casttarget IN (SELECT oid FROM own_type)
      FROM pg_catalog.pg_cast c WHERE c.oid >= 16384
), made_with(kind, name, classid, objid, depth) AS (
    SELECT a.kind, a.name, a.classid, a.objid, 0 FROM added a
    UNION ALL
    SELECT m.kind, m.name, d.refclassid, d.refobjid, m.depth + 1
      FROM made_with m
      JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid AND d.deptype IN ('i', 'a')
     WHERE m.depth < 3)
SELECT a.kind || ' ' || a.name FROM added a
 WHERE a.captures
    OR NOT EXISTS (SELECT 1 FROM made_with m
                     JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid AND d.deptype = 'e'
                    WHERE m.kind = a.kind AND m.name = a.name)
UNION ALL
-- Triggers elsewhere that run pymem's trigger functions (they would write audit rows
-- for rows that are not pymem's), and objects the pymem roles own outside the schema
-- (a view owned by pymem_owner reads every tenant's rows, since the owner's policies
-- let it).
SELECT 'trigger ' || t.tgrelid::pg_catalog.regclass::pg_catalog.text || '.' || t.tgname || ' runs pymem''s '
       || t.tgfoid::pg_catalog.regproc::pg_catalog.text
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid AND p.pronamespace = pg_catalog.to_regnamespace('pymem')
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid AND c.relnamespace <> p.pronamespace
UNION ALL
SELECT pg_catalog.format('%s %s is owned by %s', CASE WHEN c.relkind = 'v' THEN 'view' ELSE 'relation' END,
                         c.oid::pg_catalog.regclass, c.relowner::pg_catalog.regrole)
  FROM pg_catalog.pg_class c
 WHERE c.relowner IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname IN {_PYMEM_ROLES})
   AND c.relnamespace <> pg_catalog.to_regnamespace('pymem') AND c.relkind NOT IN ('i', 't', 'I')
UNION ALL
SELECT pg_catalog.format('function %s is owned by %s', p.oid::pg_catalog.regprocedure, p.proowner::pg_catalog.regrole)
  FROM pg_catalog.pg_proc p
 WHERE p.proowner IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname IN {_PYMEM_ROLES})
   AND p.pronamespace <> pg_catalog.to_regnamespace('pymem')
UNION ALL
SELECT pg_catalog.format('schema %s is owned by %s', n.nspname, n.nspowner::pg_catalog.regrole)
  FROM pg_catalog.pg_namespace n
 WHERE n.nspowner IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname IN {_PYMEM_ROLES})
   AND n.nspname <> 'pymem'
 ORDER BY 1
"""

# Settings stored for this database or any role that reach into pymem: replica mode
# skips its triggers (the audit log's append-only guard), a preloaded library runs
# code in every session, a default role or tenant context acts for whoever logs in,
# asynchronous commit loses the last committed audit rows in a crash. Custom names
# (app.*) are stored as typed, in any case. pymem distribute sets the owner's preload
# of pgvector on Citus.
_STORED_SETTINGS_SQL = """
SELECT pg_catalog.format('%s%s: %s',
           CASE WHEN s.setrole = 0 THEN 'every role' ELSE s.setrole::pg_catalog.regrole::pg_catalog.text END,
           CASE WHEN s.setdatabase = 0 THEN ' in every database' ELSE '' END, cfg.setting)
  FROM pg_catalog.pg_db_role_setting s, LATERAL pg_catalog.unnest(s.setconfig) AS cfg(setting),
       LATERAL pg_catalog.lower(pg_catalog.split_part(cfg.setting, '=', 1)) AS name
 WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT d.oid FROM pg_catalog.pg_database d
                                               WHERE d.datname = pg_catalog.current_database()))
   AND (name IN ('session_replication_role', 'session_preload_libraries', 'local_preload_libraries', 'role',
                 'session_authorization')
        OR name LIKE 'app.%'
        OR (name = 'synchronous_commit' AND pg_catalog.lower(cfg.setting) = 'synchronous_commit=off'))
   AND NOT (s.setrole = 'pymem_owner'::pg_catalog.regrole AND cfg.setting = 'session_preload_libraries=vector')
 ORDER BY 1
"""

# Who can get past row-level security: superusers and BYPASSRLS roles skip it,
# REPLICATION copies the data files, pymem_owner owns the tables (it can turn it off).
# Through any chain of memberships, NOLOGIN roles included.
_POWERFUL_ROLE = "(s.rolsuper OR s.rolbypassrls OR s.rolreplication OR s.rolname = 'pymem_owner')"
_PAST_ROW_SECURITY_SQL = f"""
SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r
 WHERE r.rolcanlogin
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles s
                WHERE {_POWERFUL_ROLE} AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER'))
 ORDER BY 1
"""

# Who can read every tenant's audit rows (pymem_auditor), or every tenant's sealed
# rows for rotation (pymem_maintainer).
_OPERATORS_SQL = """
SELECT pg_catalog.format('%s (%s)', r.rolname,
                         pg_catalog.concat_ws(', ',
                             CASE WHEN pg_catalog.pg_has_role(r.oid, 'pymem_maintainer', 'MEMBER') THEN 'maintainer' END,
                             CASE WHEN pg_catalog.pg_has_role(r.oid, 'pymem_auditor', 'MEMBER') THEN 'auditor' END))
  FROM pg_catalog.pg_roles r
 WHERE r.rolcanlogin AND NOT r.rolsuper
   AND (pg_catalog.pg_has_role(r.oid, 'pymem_maintainer', 'MEMBER')
        OR pg_catalog.pg_has_role(r.oid, 'pymem_auditor', 'MEMBER'))
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


def past_row_security(conn: psycopg.Connection) -> list[str]:
    """Logins that can get past row-level security (see ``_PAST_ROW_SECURITY_SQL``)."""
    return _names(conn, _PAST_ROW_SECURITY_SQL)


def operator_logins(conn: psycopg.Connection) -> list[str]:
    """Logins, superusers aside, that can act as pymem_maintainer or pymem_auditor: ``name (auditor)``."""
    return _names(conn, _OPERATORS_SQL)


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


def grouped(fingerprints: dict[str, str]) -> dict[str, dict[str, str]]:
    """The fingerprints as doctor reports them: ``function``, ``pgvector`` and ``schema`` (the rest)."""
    groups: dict[str, dict[str, str]] = {"function": {}, "pgvector": {}, "schema": {}}
    for name, digest in fingerprints.items():
        kind = name.split(" ", 1)[0]
        groups[kind if kind in groups else "schema"][name] = digest
    return groups


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """What differs, one phrase per object, in name order."""
    changed = [f"{name} differs from the shipped one" for name in sorted(expected)
               if name in found and found[name] != expected[name]]
    missing = [f"{name} is missing" for name in sorted(set(expected) - set(found))]
    added = [f"{name} is not pymem's" for name in sorted(set(found) - set(expected))]
    return changed + missing + added
