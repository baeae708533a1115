-- Revision 0022: expiry, time windows and negated filters.
--
-- A row may carry an expiry (memory_chunks.expires_at, NULL: none), which the AAD of its
-- sealed fields binds (version 3, new here), so that no one who can write the table can
-- change it unnoticed (the row no longer opens) or get a row purged. No read returns a
-- row whose expiry has passed (pymem.row_in_window, in every search, get and listing);
-- pymem.purge_expired removes them, audited as the new operation 'purge'. Searches and
-- listings take a time window on created_at and updated_at, and filters take negated
-- clauses ($ne, $nin, $exists): search_rows_v3 and the functions around it replace the
-- internal ones dropped here (search_rows_v2, hybrid_rows and the older reads become
-- wrappers that leave expired rows out too).
SET LOCAL ROLE pymem_owner;
-- See revision 0021: Citus runs the bundle's function commands in this transaction only
-- if the ALTERs below used one connection per node. (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

DROP FUNCTION pymem.filtered_nearest(char, public.vector, integer, bytea[], integer[], integer);
DROP FUNCTION pymem.solo_graph_walk(char);
DROP FUNCTION pymem.keyword_hits(char, bytea[], bytea[], integer[], integer);
DROP FUNCTION pymem.tags_match(bytea[], bytea[], integer[]);

-- No default, so adding it rewrites nothing. Through EXECUTE: Citus sends a distributed
-- table's DDL to its shards as the statement's text.
DO $do$
BEGIN
    -- Bounded, so that every client can read it back: psycopg reads no infinity and nothing
    -- past year 9999 in the session's time zone (write_chunks_v3 refuses later expiries):
    -- 1970-01-01 to 9999-12-30 UTC, written as epoch seconds, whose text does not depend on
    -- the session's DateStyle or TimeZone (pymem doctor compares it).
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD COLUMN expires_at timestamptz'
            ' CONSTRAINT memory_chunks_expires_at_check'
            ' CHECK (expires_at BETWEEN pg_catalog.to_timestamp(0) AND pg_catalog.to_timestamp(253402128000))';
    -- AAD v3 binds a row's expiry (pymem.security.chunk_aad).
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_aad_version_check';
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_aad_version_check'
            ' CHECK (aad_version IN (1, 2, 3))';
    -- The purge's scan: a tenant's rows that carry an expiry, soonest first.
    EXECUTE 'CREATE INDEX memory_chunks_expiry ON pymem.memory_chunks (user_hash, expires_at)'
            ' WHERE expires_at IS NOT NULL';
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text, 'index_terms'::text, 'update_from'::text,
        'purge'::text]))$sql$;
END
$do$;

RESET ROLE;
