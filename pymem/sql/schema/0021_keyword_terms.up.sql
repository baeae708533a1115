-- Revision 0021: keyword terms for hybrid search, and when a row was last updated.
--
-- Each row a tenant writes with keyword terms gets one row here per distinct term of
-- its text: the term's keyed tag (16 bytes, HMAC under the tenant's blind-index key,
-- computed in the app: pymem.terms). Only that the row holds the term: not how often,
-- nor how long the row is, which would give each row a profile a known text can be
-- matched by, keys or not (this revision's attack review). The database matches and
-- scores a query's tags against them (pymem.keyword_hits) without learning a term.
--
-- A table of postings, not an array column on memory_chunks: row security keeps a GIN
-- index out of every plan (&& is not leakproof), and a btree on (user_hash, term) is
-- usable under it, so a query reads the postings of its own terms only, whatever the
-- tenant's size. No foreign key to memory_chunks: Citus distributes the tables one at a
-- time; the write and delete functions remove a row's postings with the row, and every
-- read joins memory_chunks, so a posting left by direct DML is never returned (it still
-- counts in its term's frequency).
SET LOCAL ROLE pymem_owner;
-- On a distributed database the ALTERs below run on every shard, and Citus runs the
-- function commands of the bundle that follows in this transaction only if they used
-- one connection per node. (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

CREATE TABLE pymem.memory_terms (
    user_hash bpchar NOT NULL CONSTRAINT memory_terms_user_hash_check CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    term      bytea  NOT NULL CONSTRAINT memory_terms_term_check CHECK (octet_length(term) = 16),
    chunk_id  uuid   NOT NULL,
    CONSTRAINT memory_terms_pkey PRIMARY KEY (user_hash, term, chunk_id)
);
-- A row's postings, for its delete or re-write (a uuid equality is leakproof).
CREATE INDEX memory_terms_chunk ON pymem.memory_terms (chunk_id);
ALTER TABLE pymem.memory_terms ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.memory_terms FORCE ROW LEVEL SECURITY;
-- Only the owner's definer functions, each of which checks the tenant context. The
-- policy of memory_chunks (no subquery: Citus refuses one in a distributed table's policy).
CREATE POLICY tenant_isolation ON pymem.memory_terms
    FOR ALL TO pymem_owner
    USING (user_hash = nullif(current_setting('app.user_hash', true), '')::bpchar)
    WITH CHECK (user_hash = nullif(current_setting('app.user_hash', true), '')::bpchar);

-- When a row was last replaced (an upsert or an update), NULL if never: reads return
-- coalesce(updated_at, created_at). No default, so adding it rewrites nothing. Through
-- EXECUTE: Citus sends a distributed table's DDL to its shards as the statement's text.
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD COLUMN updated_at timestamptz';
    -- A back-fill of keyword terms (pymem index-terms) is recorded in the tenant's chain, and
    -- so are the write records of the rows an update read.
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text, 'index_terms'::text, 'update_from'::text]))$sql$;
END
$do$;

RESET ROLE;
