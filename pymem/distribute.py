"""Put pymem on Citus: the one step after ``alembic upgrade head`` on a Citus coordinator.

Every pymem table is distributed by ``user_hash`` and co-located, so a tenant's
chunks, audit chain, chain head, key counts, quarantine records and data keys share
one shard group; the small settings tables (``tuning``, ``encryption_keys``,
``root_keys``) become reference tables, copied to every node. ``tenant_proofs`` stays on the coordinator, where
``enter_tenant`` runs; ``context_key`` is copied to a plain table of each worker
(:func:`_copy_context_key_to_workers`). Each API function that takes the tenant as its first
argument is distributed with ``distribution_arg_name => 'p_user_hash'`` and
``force_delegation``, so Citus runs the whole call on the worker holding that
tenant's shards, inside the caller's transaction.

What changes for the DBA (docs/citus.md says it in full):

* ``pymem_owner`` becomes LOGIN. Citus opens node-to-node connections as the
  current user, and the API functions, the owner's DDL and shard moves run as
  ``pymem_owner`` (citusdata/citus#7719). It has no password: give it node-to-node
  authentication only (``pg_dist_authinfo`` or certificates), never to an app.
* ``citus.propagate_set_commands = 'local'`` is set for the database, so the
  ``SET LOCAL app.user_hash`` and context ticket of each tenant transaction reach the
  workers; and ``track_activities = off`` on every worker, so that no session there
  (nor ``citus_stat_activity``) shows that text.

Migrations run on a Citus coordinator before this step (``alembic upgrade head``)
create pymem's objects on the coordinator alone (:func:`migration_connect_args`), and
this step distributes them; the SQL files are the same as on plain PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql
from .errors import NotReady

log = logging.getLogger(__name__)

# Co-located with memory_chunks, distributed by user_hash; the first is the anchor.
DISTRIBUTED_TABLES = ("memory_chunks", "audit_log", "audit_chain_heads", "key_stats", "quarantined_chunks",
                      "data_keys", "memory_terms", "audit_anchors")
REFERENCE_TABLES = ("tuning", "encryption_keys", "root_keys")
# API functions whose first argument, p_user_hash, routes the whole call.
TENANT_FUNCTIONS = ("read_intent", "read_result", "put_chunks", "get_chunks", "search_chunks",
                    "search_chunks_on_standby", "export_chunks", "rekey_chunks", "delete_document", "erase_tenant",
                    "quarantine_chunks",
                    # 0007
                    "write_chunks", "delete_chunk_ids", "get_chunks_v2", "search_chunks_v2",
                    "search_chunks_on_standby_v2", "export_chunks_v2", "rekey_chunks_v2")
# 0019: the tenant's data keys (each writes and reads the tenant's shards only).
TENANT_FUNCTIONS_0019 = ("live_data_keys", "data_keys_of", "create_data_key")
# 0020: the live keys' digests, read beside every read.
TENANT_FUNCTIONS_0020 = ("live_data_key_digests",)
# 0021: writes with keyword terms, hybrid search, back-filling terms.
TENANT_FUNCTIONS_0021 = ("write_chunks_v2", "search_hybrid_chunks", "search_hybrid_chunks_on_standby", "index_terms")
# 0022: expiries, time windows and negated filters; the purge of expired rows.
TENANT_FUNCTIONS_0022 = ("write_chunks_v3", "search_chunks_v3", "search_chunks_on_standby_v3", "get_chunks_v3",
                         "export_chunks_v3", "purge_expired")
# 0024: a chain's retirement (its anchor, the rows it deletes and its audit row are the tenant's).
TENANT_FUNCTIONS_0024 = ("audit_retire",)
TENANT_FUNCTIONS += (TENANT_FUNCTIONS_0019 + TENANT_FUNCTIONS_0020 + TENANT_FUNCTIONS_0021 + TENANT_FUNCTIONS_0022
                     + TENANT_FUNCTIONS_0024)
# Citus copies a function's GRANTs to the workers but not the REVOKE from PUBLIC
# that the migrations made on the coordinator: without these, any login that can
# reach a worker could call every internal function there. The REVOKE runs on the
# coordinator (Citus forwards it for distributed functions); the default
# privileges, which Citus does not forward, are set on each worker directly.
_REVOKE_FUNCTIONS = "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC"
_WORKER_DEFAULT_PRIVILEGES = ("SET citus.enable_ddl_propagation TO off;"
                              " ALTER DEFAULT PRIVILEGES FOR ROLE pymem_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
DEFAULT_SHARD_COUNT = 32


@dataclass(frozen=True)
class DistributeReport:
    """What :func:`distribute` found or did."""

    shard_count: int
    workers: int
    tables_distributed: int  # by this call; 0 when it was already done
    functions_delegated: int


def citus_installed(conn: psycopg.Connection) -> bool:
    """Whether the ``citus`` extension exists in the connected database."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')").fetchone()[0]


def chunks_distributed(conn: psycopg.Connection) -> bool:
    """Whether ``pymem.memory_chunks`` is already a Citus distributed table."""
    return citus_installed(conn) and conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition"
        " WHERE logicalrelid = pg_catalog.to_regclass('pymem.memory_chunks'))").fetchone()[0]


def migration_connect_args(dsn: str) -> dict:
    """Connection arguments for pymem's migrations on a Citus coordinator; empty without Citus.

    Until ``pymem distribute`` has run, pymem's objects live on the coordinator
    only: Citus would otherwise forward each statement to the workers as
    ``pymem_owner``, which cannot log in yet, and the roles and schema created in
    the same transaction are not visible there. Distribution later creates every
    object on the workers.

    Once distributed, Citus forwards each function's DDL to the workers itself, but
    the migration's ``SET LOCAL`` (the role, the search path) must stay on the
    coordinator: the database's ``citus.propagate_set_commands = 'local'`` would
    forward them too, and a worker then refuses the forwarded DDL ("operation is not
    allowed on this node").

    Raises:
        NotReady: the database was distributed before pymem_owner's sessions were
            set to load pgvector: ``pymem distribute`` must run once first.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not citus_installed(conn):
            return {}
        distributed = chunks_distributed(conn)
        if distributed and not owner_preloads_pgvector(conn):
            raise NotReady("this distributed database was distributed by an older pymem: run pymem distribute once"
                           " before migrating it (the upgrade's function DDL needs pgvector loaded on the workers)")
        setting = "citus.propagate_set_commands=none" if distributed else "citus.enable_ddl_propagation=off"
    options = psycopg.conninfo.conninfo_to_dict(dsn).get("options") or ""
    return {"options": f"{options} -c {setting}".strip()}


def distribute(dsn: str, *, shard_count: int = DEFAULT_SHARD_COUNT) -> DistributeReport:
    """Distribute pymem's tables and API functions over the Citus cluster at ``dsn``.

    Idempotent: tables already distributed are left as they are, and functions,
    privileges and settings are (re)applied; run it again after adding a node.

    Args:
        dsn: a superuser connection to the coordinator's pymem database, migrated
            to head, with its workers added (``citus_add_node``).
        shard_count: shards per distributed table (Citus' default is 32).

    Raises:
        NotReady: Citus is not installed in the database, there are no workers,
            the schema predates migration 0006, or the role is not a superuser.
    """
    if not 1 <= shard_count <= 64000:
        raise ValueError("shard_count must be between 1 and 64000")
    with psycopg.connect(dsn, autocommit=True) as conn:
        workers = _check_ready(conn)
        distributed_now = 0
        if not chunks_distributed(conn):
            with conn.transaction():
                # pymem's row triggers reach only co-located shards of the row's tenant.
                conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
                distributed_now = _reference_tables(conn)
                anchor = f"pymem.{DISTRIBUTED_TABLES[0]}"
                conn.execute("SELECT pg_catalog.create_distributed_table(%s, 'user_hash', shard_count => %s)",
                             (anchor, shard_count))
                distributed_now += 1 + _colocated_tables(conn)
        with conn.transaction():
            conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
            distributed_now += _reference_tables(conn) + _colocated_tables(conn)
        with conn.transaction():
            conn.execute("ALTER ROLE pymem_owner LOGIN")
        _preload_pgvector_for_the_owner(conn)
        delegated = _distribute_functions(conn)
        _revoke_public_on_workers(conn)
        _hide_query_text_on_workers(conn)
        _copy_context_key_to_workers(conn)
        conn.execute(sql.SQL("ALTER DATABASE {} SET citus.propagate_set_commands = 'local'").format(
            sql.Identifier(conn.info.dbname)))
        shards = conn.execute("SELECT shard_count FROM public.citus_tables"
                              " WHERE table_name = 'pymem.memory_chunks'::regclass").fetchone()[0]
    log.info("pymem distributed over %d workers, %d shards", workers, shards)
    return DistributeReport(shards, workers, distributed_now, delegated)


def _not_yet_citus(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """Those of ``tables`` (in pymem) that exist and are not Citus tables yet, in order."""
    return [row[0] for row in conn.execute(
        "SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n)"
        " WHERE pg_catalog.to_regclass('pymem.' || t) IS NOT NULL AND NOT EXISTS (SELECT 1"
        " FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = pg_catalog.to_regclass('pymem.' || t))"
        " ORDER BY n", (list(tables),))]


def _reference_tables(conn: psycopg.Connection) -> int:
    """Make each of REFERENCE_TABLES that exists and is not a Citus table yet a reference
    table (all on the first run; after an upgrade, those the new revision added);
    return how many. Runs in the caller's transaction."""
    missing = _not_yet_citus(conn, REFERENCE_TABLES)
    for table in missing:
        conn.execute("SELECT pg_catalog.create_reference_table(%s)", (f"pymem.{table}",))
    return len(missing)


def _colocated_tables(conn: psycopg.Connection) -> int:
    """Distribute each of DISTRIBUTED_TABLES that exists and is not a Citus table yet (all on the
    first run; after an upgrade, those the new revision added) with memory_chunks; return how many."""
    missing = _not_yet_citus(conn, DISTRIBUTED_TABLES)
    for table in missing:
        conn.execute("SELECT pg_catalog.create_distributed_table(%s, 'user_hash', colocate_with => %s)",
                     (f"pymem.{table}", f"pymem.{DISTRIBUTED_TABLES[0]}"))
    return len(missing)


def _check_ready(conn: psycopg.Connection) -> int:
    if not conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]:
        raise NotReady("pymem distribute needs a superuser connection to the coordinator")
    if not citus_installed(conn):
        raise NotReady("the citus extension is not installed in this database: CREATE EXTENSION citus")
    if conn.execute("SELECT pg_catalog.to_regprocedure('pymem.check_tenant(character)') IS NULL").fetchone()[0]:
        raise NotReady("the pymem schema predates migration 0006: run alembic upgrade head first")
    workers = conn.execute("SELECT count(*) FROM pg_catalog.pg_dist_node"
                           " WHERE noderole = 'primary' AND isactive AND groupid <> 0").fetchone()[0]
    if workers == 0:
        raise NotReady("no active worker nodes: add them with citus_add_node first")
    return workers


# A later migration's CREATE OR REPLACE FUNCTION reaches the workers on connections
# Citus opens as pymem_owner, a new session each: without pgvector's library loaded
# there, a non-superuser may not name its hnsw.* settings in a SET clause.
_PRELOAD = "ALTER ROLE pymem_owner IN DATABASE {} SET session_preload_libraries = 'vector'"


def _preload_pgvector_for_the_owner(conn: psycopg.Connection) -> None:
    statement = sql.SQL(_PRELOAD).format(sql.Identifier(conn.info.dbname)).as_string(conn)
    _on_every_worker(conn, "SET citus.enable_ddl_propagation TO off; " + statement,
                     "set pymem_owner's session_preload_libraries")
    conn.execute("SET citus.enable_ddl_propagation TO off")
    try:
        conn.execute(statement)
    finally:
        conn.execute("RESET citus.enable_ddl_propagation")


def owner_preloads_pgvector(conn: psycopg.Connection) -> bool:
    """Whether pymem_owner's sessions in this database load pgvector (set by :func:`distribute`)."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s"
        " WHERE s.setrole = 'pymem_owner'::pg_catalog.regrole"
        " AND s.setdatabase = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
        " AND 'session_preload_libraries=vector' = ANY (s.setconfig))").fetchone()[0]


def _revoke_public_on_workers(conn: psycopg.Connection) -> None:
    conn.execute(_REVOKE_FUNCTIONS)
    _on_every_worker(conn, _WORKER_DEFAULT_PRIVILEGES, "revoke PUBLIC's default access to pymem functions")


def _hide_query_text_on_workers(conn: psycopg.Connection) -> None:
    """``track_activities = off`` for the database on every worker.

    Citus sends each tenant transaction's ``SET LOCAL app.user_hash`` and context
    ticket to the workers as query text, on connections of the app's own login, and
    pg_stat_activity (or citus_stat_activity on the coordinator) would show that
    text to every session of the login: the ticket acts as the tenant for two
    minutes on its worker. Off, the workers report no query text at all.
    """
    statement = sql.SQL("ALTER DATABASE {} SET track_activities = off").format(
        sql.Identifier(conn.info.dbname)).as_string(conn)
    _on_every_worker(conn, "SET citus.enable_ddl_propagation TO off; " + statement,
                     "turn track_activities off (the tenant tickets' SET LOCAL text)")


# A plain table on each worker, not a reference table: every node reads its own copy
# without Citus' executor. (A transaction that read a reference table on the
# coordinator, then made a delegated call that read it on a worker, could not read it
# on the coordinator again: Citus refuses to switch from local to remote execution.)
_WORKER_CONTEXT_KEY = """SET citus.enable_ddl_propagation TO off;
CREATE TABLE IF NOT EXISTS pymem.context_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key      bytea   NOT NULL CHECK (octet_length(key) = 32));
ALTER TABLE pymem.context_key OWNER TO pymem_owner;
ALTER TABLE pymem.context_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.context_key FORCE ROW LEVEL SECURITY;
REVOKE ALL ON pymem.context_key FROM PUBLIC;
DO $do$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policies
                    WHERE schemaname = 'pymem' AND tablename = 'context_key' AND policyname = 'context_key_owner') THEN
        CREATE POLICY context_key_owner ON pymem.context_key FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
    END IF;
END $do$;
INSERT INTO pymem.context_key (key) VALUES (pg_catalog.decode('{key}', 'hex'))
    ON CONFLICT (only_row) DO UPDATE SET key = excluded.key"""


def _copy_context_key_to_workers(conn: psycopg.Connection) -> None:
    """The coordinator's context key, into a table of the same name on every worker.

    The key travels as the text of the command the superuser's session sends each
    worker (a bind parameter on the coordinator; on the workers, whose query text
    :func:`_hide_query_text_on_workers` hides, the text of that session's statement).
    """
    if conn.execute("SELECT pg_catalog.to_regclass('pymem.context_key') IS NULL").fetchone()[0]:
        return  # a schema before 0015
    key = conn.execute("SELECT k.key FROM pymem.context_key k").fetchone()[0]
    _on_every_worker(conn, _WORKER_CONTEXT_KEY.replace("{key}", bytes(key).hex()),
                     "copy the tenant context key")


def workers_showing_query_text(conn: psycopg.Connection) -> list[str]:
    """The workers (host:port) whose new sessions in this database still report query text."""
    return [f"{host}:{port}" for host, port, ok, result in conn.execute(
        "SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers('SHOW track_activities')")
        if not ok or result != "off"]


def _on_every_worker(conn: psycopg.Connection, command: str, what: str) -> None:
    """Run ``command`` on every worker.

    Raises:
        NotReady: a worker refused; the message names each one and why.
    """
    failed = [f"{host}:{port}: {result}" for host, port, ok, result in conn.execute(
        "SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers(%s)", (command,))
        if not ok]
    if failed:
        raise NotReady(f"could not {what} on {'; '.join(failed)}")


def _distribute_functions(conn: psycopg.Connection) -> int:
    """Create every pymem function on the workers, then delegate the tenant API."""
    with conn.transaction():
        functions = [row[0] for row in conn.execute(
            "SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p"
            " WHERE p.pronamespace = 'pymem'::pg_catalog.regnamespace ORDER BY p.oid")]
        for function in functions:
            conn.execute("SELECT pg_catalog.create_distributed_function(%s::pg_catalog.regprocedure)", (function,))
        delegated = conn.execute(
            "SELECT count(pg_catalog.create_distributed_function(p.oid::pg_catalog.regprocedure, 'p_user_hash',"
            " colocate_with => 'pymem.memory_chunks', force_delegation => true))"
            " FROM pg_catalog.pg_proc p"
            " WHERE p.pronamespace = 'pymem'::pg_catalog.regnamespace AND p.proname = ANY (%s)",
            (list(TENANT_FUNCTIONS),)).fetchone()[0]
        # A database at an older revision lacks the later ones (0019's data-key functions,
        # 0020's digests, 0021's hybrid search, 0022's expiry, 0024's retirement): they are delegated by the run
        # after the upgrade that adds them.
        present = conn.execute("SELECT count(DISTINCT p.proname) FROM pg_catalog.pg_proc p"
                               " WHERE p.pronamespace = 'pymem'::pg_catalog.regnamespace AND p.proname = ANY (%s)",
                               (list(TENANT_FUNCTIONS),)).fetchone()[0]
    later = sum(map(len, (TENANT_FUNCTIONS_0019, TENANT_FUNCTIONS_0020, TENANT_FUNCTIONS_0021,
                          TENANT_FUNCTIONS_0022, TENANT_FUNCTIONS_0024)))
    if delegated != present or present < len(TENANT_FUNCTIONS) - later:
        raise NotReady(f"expected {len(TENANT_FUNCTIONS)} tenant API functions, found {delegated}")
    return delegated
