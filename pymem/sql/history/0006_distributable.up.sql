-- pymem 0006: a schema that distributes by tenant (Citus) and stays valid on plain
-- PostgreSQL 16 and 18. Nothing here needs Citus; `pymem distribute` (pymem/distribute.py)
-- is the one step that turns it into distributed tables on a cluster.
--
--   * Every key and unique index includes user_hash, the distribution column:
--     memory_chunks' key becomes (user_hash, id).
--   * The chunk policy has no subquery (Citus refuses subqueries in policies).
--   * Every API function takes the tenant as its first argument and checks it
--     against the tenant context, so Citus can run the whole call on the worker
--     holding that tenant's shards (create_distributed_function with
--     distribution_arg_name => 'p_user_hash'), and every statement in it names
--     user_hash, so it reads and writes exactly one shard group.
--   * No statement-level triggers with transition tables (shards cannot see
--     them): the API keeps key_stats itself, set-wise per call; a row trigger
--     keeps it for anyone else's direct DML, like the audit trigger of 0005.
--   * No INSERT ... SELECT into a table under RLS (Citus turns it into a COPY,
--     which PostgreSQL refuses under RLS): rows are inserted one statement each.
--   * The key seal-budget warning needs a sum over all tenants; it stays on each
--     write where the table is local, and moves to pymem.key_usage() (doctor,
--     rotate-key) where it is distributed, because there it would be a
--     cross-shard query on every write.
--   * TRUNCATE of a distributed memory_chunks is refused (its audit row and the
--     key_stats reset would have to reach every shard from a shard's trigger).

SELECT '[0]'::public.vector;  -- load pgvector so its hnsw.* settings are known (see 0003)

SET LOCAL ROLE pymem_owner;

-- ---------------------------------------------------------------------------
-- Bodies that pin no columns.
-- ---------------------------------------------------------------------------
-- Functions with a BEGIN ATOMIC body depend on the columns they read, so a
-- column's type cannot change under them (below), and Citus'
-- create_distributed_table, which replaces a table, would drop them. plpgsql
-- bodies, same results. key_usage() also raises the seal-budget warning, which
-- on Citus is not raised on each write (see warn_key_budget below).
CREATE OR REPLACE FUNCTION pymem.key_usage()
    RETURNS TABLE (key_id integer, live_rows bigint, seals bigint, tenants bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
BEGIN
    FOR key_id, live_rows, seals, tenants IN
        SELECT s.key_id, sum(s.live_rows)::bigint, sum(s.seals)::bigint, count(*) FILTER (WHERE s.live_rows > 0)
          FROM pymem.key_stats s GROUP BY s.key_id ORDER BY s.key_id
    LOOP
        IF seals >= v_warn THEN
            RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it', key_id, seals, v_warn
                USING HINT = 'pymem rotate-key re-seals rows under the active key';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pymem.tenants_with_keys(p_key_ids integer[])
    RETURNS TABLE (user_hash char(64), live_rows bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT s.user_hash, sum(s.live_rows)::bigint FROM pymem.key_stats s
     WHERE s.key_id = ANY (p_key_ids) AND s.live_rows > 0
     GROUP BY s.user_hash ORDER BY s.user_hash;
END
$$;

CREATE OR REPLACE FUNCTION pymem.quarantined()
    RETURNS TABLE (user_hash char(64), chunk_id uuid, key_id integer, reason text, at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT q.user_hash, q.chunk_id, q.key_id, q.reason, q.at FROM pymem.quarantined_chunks q
     ORDER BY q.user_hash, q.chunk_id;
END
$$;

CREATE OR REPLACE FUNCTION pymem.audit_heads() RETURNS TABLE (user_hash char(64), chain_pos bigint, row_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT h.user_hash, h.chain_pos, h.row_hash FROM pymem.audit_chain_heads h WHERE h.chain_pos > 0
     ORDER BY h.user_hash;
END
$$;

-- Likewise embedding_dim, which depends on memory_chunks.
CREATE OR REPLACE FUNCTION pymem.embedding_dim() RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN (SELECT a.atttypmod FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = 'pymem.memory_chunks'::regclass AND a.attname = 'embedding');
END
$$;

-- ---------------------------------------------------------------------------
-- Keys, the tenant column and the policy.
-- ---------------------------------------------------------------------------
ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_pkey;
ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_pkey PRIMARY KEY (user_hash, id);

-- user_hash becomes unconstrained bpchar (still 64 lowercase hex by CHECK): a
-- force-delegated Citus call only runs statements whose distribution value equals
-- its tenant argument node for node, and an INSERT into char(64) carries typmod
-- 68 where the argument carries none. bpchar(64) to bpchar is binary-coercible:
-- no table rewrite, no index rebuild.
DROP POLICY tenant_isolation ON pymem.memory_chunks;  -- a column in a policy cannot change type
ALTER TABLE pymem.memory_chunks ALTER COLUMN user_hash TYPE bpchar;
-- The policy of 0001, without the subquery (Citus refuses subqueries in policies).
CREATE POLICY tenant_isolation ON pymem.memory_chunks
    FOR ALL TO pymem_app, pymem_owner
    USING (user_hash = nullif(current_setting('app.user_hash', true), '')::bpchar)
    WITH CHECK (user_hash = nullif(current_setting('app.user_hash', true), '')::bpchar);
ALTER TABLE pymem.audit_log ALTER COLUMN user_hash TYPE bpchar;
ALTER TABLE pymem.audit_chain_heads ALTER COLUMN user_hash TYPE bpchar;
ALTER TABLE pymem.key_stats ALTER COLUMN user_hash TYPE bpchar;
ALTER TABLE pymem.key_stats ADD CONSTRAINT key_stats_user_hash_check CHECK (user_hash ~ '^[0-9a-f]{64}$');
ALTER TABLE pymem.quarantined_chunks ALTER COLUMN user_hash TYPE bpchar;
ALTER TABLE pymem.quarantined_chunks
    ADD CONSTRAINT quarantined_chunks_user_hash_check CHECK (user_hash ~ '^[0-9a-f]{64}$');


-- ---------------------------------------------------------------------------
-- Helpers.
-- ---------------------------------------------------------------------------
-- Fail closed unless the tenant argument is the caller's tenant context. Citus
-- routes a call by this argument, and the argument is chosen by the caller, so it
-- is never trusted on its own. No context, or another tenant's hash, is refused.
CREATE FUNCTION pymem.check_tenant(p_user_hash char(64)) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The raw setting, not current_tenant(): its char(64) cast would cut a longer
    -- value down to a hash the policy then does not match.
    v_context text := current_setting('app.user_hash', true);
BEGIN
    IF p_user_hash IS NULL OR v_context IS NULL OR v_context !~ '^[0-9a-f]{64}$'
       OR v_context <> p_user_hash::text THEN
        RAISE EXCEPTION 'pymem: the tenant argument is not the tenant context of this transaction'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'SET LOCAL app.user_hash in the same transaction (pymem.set_rls_context); '
                         'on Citus, citus.propagate_set_commands must be ''local''';
    END IF;
END
$$;

-- Whether memory_chunks is a Citus distributed table. EXECUTE, so that this
-- function exists (and answers false) where Citus is not installed.
CREATE FUNCTION pymem.chunks_distributed() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_distributed boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
        INTO v_distributed USING 'pymem.memory_chunks'::regclass;
    RETURN v_distributed;
END
$$;

-- Rows in the HNSW index that a tenant's search walks: the whole table, or on
-- Citus the tenant's shard (the coordinator's table is an empty shell there).
CREATE FUNCTION pymem.index_rows(p_user_hash char(64)) RETURNS double precision
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relation regclass := 'pymem.memory_chunks'::regclass;
    v_shard    bigint;
BEGIN
    IF pymem.chunks_distributed() THEN
        EXECUTE 'SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)'
            INTO v_shard USING v_relation, p_user_hash;
        v_relation := to_regclass(format('pymem.memory_chunks_%s', v_shard));
    END IF;
    RETURN (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c WHERE c.oid = v_relation);
END
$$;

-- Warn when a key nears its AES-GCM random-nonce budget. Needs every tenant's
-- count, so only where that is a local query; on Citus, pymem.key_usage().
CREATE FUNCTION pymem.warn_key_budget(p_key_ids integer[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
    v_key  record;
BEGIN
    IF pymem.chunks_distributed() THEN
        RETURN;
    END IF;
    FOR v_key IN
        SELECT s.key_id, sum(s.seals) AS seals FROM pymem.key_stats s
         WHERE s.key_id = ANY (p_key_ids) GROUP BY s.key_id
    LOOP
        IF v_key.seals >= v_warn THEN
            RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it',
                v_key.key_id, v_key.seals, v_warn
                USING HINT = 'pymem rotate-key re-seals rows under the active key';
        END IF;
    END LOOP;
END
$$;

-- Count rows written (p_sign = 1: live rows and three seals each) or removed
-- (p_sign = -1: live rows only) under each key, for one tenant. One statement per
-- distinct key, each on the tenant's key_stats row.
CREATE FUNCTION pymem.count_keys(p_user_hash char(64), p_key_ids integer[], p_sign integer) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_key record;
BEGIN
    FOR v_key IN SELECT k.key_id, count(*) AS n FROM unnest(p_key_ids) AS k(key_id) GROUP BY k.key_id LOOP
        IF p_sign > 0 THEN
            INSERT INTO pymem.key_stats AS s (key_id, user_hash, live_rows, seals)
            VALUES (v_key.key_id, p_user_hash, v_key.n, 3 * v_key.n)
            ON CONFLICT (key_id, user_hash)
            DO UPDATE SET live_rows = s.live_rows + excluded.live_rows, seals = s.seals + excluded.seals;
        ELSE
            UPDATE pymem.key_stats s SET live_rows = s.live_rows - v_key.n
             WHERE s.user_hash = p_user_hash AND s.key_id = v_key.key_id;
        END IF;
    END LOOP;
END
$$;

-- As in 0005, with the row written column by column: Citus routes a statement
-- by a distribution value it can read off the statement, and v_row.* hides it.
CREATE OR REPLACE FUNCTION pymem.audit_append(p_user_hash char(64), p_operation text, p_phase text, p_ticket uuid,
                                              p_params_digest bytea, p_chunk_ids uuid[])
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_head pymem.audit_chain_heads := pymem.audit_lock_chain(p_user_hash);
    v_row  pymem.audit_log;
BEGIN
    v_row.chain_pos := v_head.chain_pos + 1;
    v_row.at := greatest(clock_timestamp(), v_head.at);
    v_row.db_role := session_user;
    v_row.txid := pg_current_xact_id();
    v_row.row_hash := pymem.audit_row_digest(v_head.row_hash, p_user_hash, v_row.chain_pos, v_row.at,
        v_row.db_role, p_operation, p_phase, p_ticket, p_params_digest, p_chunk_ids,
        cardinality(p_chunk_ids), v_row.txid);
    INSERT INTO pymem.audit_log (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest,
                                 chunk_ids, row_count, txid, prev_hash, row_hash)
    VALUES (p_user_hash, v_row.chain_pos, v_row.at, v_row.db_role, p_operation, p_phase, p_ticket,
            p_params_digest, p_chunk_ids, cardinality(p_chunk_ids), v_row.txid, v_head.row_hash, v_row.row_hash);
    UPDATE pymem.audit_chain_heads h SET chain_pos = v_row.chain_pos, row_hash = v_row.row_hash, at = v_row.at
     WHERE h.user_hash = p_user_hash;
    RETURN v_row.chain_pos;
END
$$;

-- ---------------------------------------------------------------------------
-- Triggers: row-level only.
-- ---------------------------------------------------------------------------
DROP TRIGGER memory_chunks_key_stats_insert ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_update ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_delete ON pymem.memory_chunks;
DROP FUNCTION pymem.track_key_stats();

-- Direct DML by anyone but the owner (the API counts for itself), per row.
CREATE FUNCTION pymem.count_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.count_keys(OLD.user_hash, ARRAY[OLD.key_id], -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pymem.count_keys(NEW.user_hash, ARRAY[NEW.key_id], 1);
        PERFORM pymem.warn_key_budget(ARRAY[NEW.key_id]);
    END IF;
    RETURN NULL;
END
$$;

-- Named after memory_chunks_audit_direct on purpose: same-event triggers fire in
-- name order, so the chain head is locked before the key_stats row.
CREATE TRIGGER memory_chunks_key_stats_direct AFTER INSERT OR UPDATE OR DELETE ON pymem.memory_chunks
    FOR EACH ROW WHEN (current_user <> 'pymem_owner') EXECUTE FUNCTION pymem.count_direct_write();

-- TRUNCATE: audited and live counts zeroed where the table is local; refused
-- where it is distributed (on the coordinator, and on a shard, whose name is
-- memory_chunks_<shard id>).
DROP TRIGGER memory_chunks_audit_truncate ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_truncate ON pymem.memory_chunks;
DROP FUNCTION pymem.reset_live_counts();

CREATE FUNCTION pymem.chunks_truncated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'memory_chunks' OR pymem.chunks_distributed() THEN
        RAISE EXCEPTION 'pymem: TRUNCATE of a distributed pymem.memory_chunks is refused'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'erase tenants with pymem.erase_tenant, each in its own tenant context';
    END IF;
    PERFORM pymem.audit_append(pymem.no_tenant(), 'truncate', 'write', NULL, NULL, '{}');
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_truncate BEFORE TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.chunks_truncated();

-- audit_direct_write no longer handles TRUNCATE (chunks_truncated does).
CREATE OR REPLACE FUNCTION pymem.audit_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.audit_append(OLD.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[OLD.id]);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_hash <> OLD.user_hash) THEN
        PERFORM pymem.audit_append(NEW.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- The API, v3: the tenant is the first argument of every call.
-- ---------------------------------------------------------------------------
DROP FUNCTION pymem.read_intent(uuid, text, bytea);
DROP FUNCTION pymem.redeem_read_intent(uuid, text, bytea);
DROP FUNCTION pymem.get_chunks(uuid, uuid[]);
DROP FUNCTION pymem.search_chunks(uuid, public.vector, integer);
DROP FUNCTION pymem.export_chunks(uuid, integer[], uuid, integer);
DROP FUNCTION pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint);
DROP FUNCTION pymem.delete_document(text);
DROP FUNCTION pymem.erase_tenant();
DROP FUNCTION pymem.quarantine_chunks(uuid[], text);
DROP FUNCTION pymem.audit_chain();

CREATE FUNCTION pymem.read_intent(p_user_hash char(64), p_ticket uuid, p_operation text, p_params_digest bytea)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_ticket IS NULL OR p_operation IS NULL OR p_operation NOT IN ('search', 'get', 'export')
       OR p_params_digest IS NULL OR octet_length(p_params_digest) <> 32 THEN
        RAISE EXCEPTION 'read_intent: needs a ticket, an operation (search, get, export) and a 32-byte digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'intent', p_ticket, p_params_digest, '{}');
END
$$;

-- The intent p_ticket of this tenant, committed and unexpired, or an error.
-- pg_xact_status() of the intent's top-level transaction is 'in progress' when it
-- was written in this transaction (savepoints included).
CREATE FUNCTION pymem.committed_intent(p_user_hash char(64), p_ticket uuid) RETURNS pymem.audit_log
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_intent pymem.audit_log;
BEGIN
    SELECT a.* INTO v_intent FROM pymem.audit_log a
     WHERE a.user_hash = p_user_hash AND a.ticket = p_ticket AND a.phase = 'intent';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pymem: no read intent with this ticket for this tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'call pymem.read_intent in its own committed transaction first';
    END IF;
    IF v_intent.at < clock_timestamp() - make_interval(secs => (SELECT t.read_intent_ttl_s FROM pymem.tuning t)) THEN
        RAISE EXCEPTION 'pymem: the read intent has expired' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_xact_status(v_intent.txid) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'pymem: the read intent must be committed before the read'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_intent;
END
$$;

-- p_ticket must be a committed, unexpired intent of this tenant for exactly this read.
CREATE FUNCTION pymem.redeem_read_intent(p_user_hash char(64), p_ticket uuid, p_operation text,
                                         p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_intent pymem.audit_log := pymem.committed_intent(p_user_hash, p_ticket);
BEGIN
    IF v_intent.operation <> p_operation OR v_intent.params_digest <> p_params_digest THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pymem.put_chunks(
    p_user_hash    char(64),
    p_ids          uuid[],
    p_doc_ids      text[],
    p_sources      text[],
    p_text_ciphers bytea[],
    p_meta_ciphers bytea[],
    p_emb_ciphers  bytea[],
    p_key_ids      integer[],
    p_embeddings   public.vector[],
    p_aad_version  smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_n   integer := cardinality(p_ids);
    v_ids uuid[] := '{}';
    v_row record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'put_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'put_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the chain head, then rows, then key_stats.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers,
                               p_key_ids, p_embeddings)
                        AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding)
    LOOP
        INSERT INTO pymem.memory_chunks
            (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding, aad_version)
        VALUES (v_row.id, p_user_hash, v_row.doc_id, v_row.source, v_row.text_cipher, v_row.meta_cipher,
                v_row.emb_cipher, v_row.key_id, v_row.embedding, p_aad_version);
        v_ids := v_ids || v_row.id;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, p_key_ids, 1);
    PERFORM pymem.warn_key_budget(p_key_ids);
    PERFORM pymem.audit_append(p_user_hash, 'insert', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN v_n;
END
$$;

-- Reads return emb_cipher and the plaintext embedding as well, so the client can
-- check that the searchable copy still matches its sealed shadow.
CREATE FUNCTION pymem.get_chunks(p_user_hash char(64), p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'get_chunks: give between 1 and 10000 ids' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'get', pymem.get_digest(p_ids));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'get', 'result', p_ticket, NULL, v_ids);
END
$$;

-- The search itself, for search_chunks (primary) and search_chunks_on_standby.
-- Every setting that steers it is pinned here (as in 0005); on Citus it runs on
-- the worker holding the tenant's shard, so they apply there. Internal: callers
-- go through the two functions below, which check the tenant and the intent.
CREATE FUNCTION pymem.search_rows(p_user_hash char(64), p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
    SET hnsw.iterative_scan = 'relaxed_order'
    SET hnsw.ef_search = '100'
    SET hnsw.max_scan_tuples = '20000'
    SET hnsw.scan_mem_multiplier = '1'
    SET enable_sort = off
    SET enable_seqscan = on
    SET enable_indexscan = on
    SET enable_bitmapscan = on
    SET enable_indexonlyscan = on
    SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    v_exact_max integer := (SELECT t.exact_search_max_rows FROM pymem.tuning t);
    v_rows      bigint;
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The tenant's live rows pick the path: exact search for small tenants, the
    -- HNSW index for large ones.
    SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = p_user_hash;
    IF v_rows > v_exact_max THEN
        -- A tenant with a large share of the index it walks finds k matches among
        -- pgvector's default 40 candidates; 100 is for the rest. Local to this call.
        IF v_rows >= 0.1 * pymem.index_rows(p_user_hash) THEN
            PERFORM set_config('hnsw.ef_search', '40', true);
        END IF;
        RETURN QUERY
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                       c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance
                  FROM pymem.memory_chunks c
                 WHERE c.user_hash = p_user_hash
                 ORDER BY c.embedding OPERATOR(public.<=>) p_query
                 LIMIT p_k)
            SELECT * FROM hits h ORDER BY h.distance;  -- relaxed_order: re-sort the k hits
    ELSIF v_rows > 0 THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the planner
        -- reads the tenant's rows through the btree and keeps the exact top k.
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, c.embedding OPERATOR(public.<=>) p_query
              FROM pymem.memory_chunks c
             WHERE c.user_hash = p_user_hash
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k;
    END IF;
END
$$;

CREATE FUNCTION pymem.search_chunks(p_user_hash char(64), p_ticket uuid, p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search', pymem.search_digest(p_query, p_k));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
        SELECT * FROM pymem.search_rows(p_user_hash, p_query, p_k)
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'search', 'result', p_ticket, NULL, v_ids);
END
$$;

-- Reads from a hot standby. The intent is written and committed on the primary
-- (a standby cannot write); a standby sees a row only once its commit has been
-- replayed, so an intent visible here is durable there, and redeem_read_intent
-- checks it exactly as on the primary. The standby cannot write the result row:
-- the client appends it on the primary with pymem.read_result. Refused on a
-- primary, which has search_chunks.
CREATE FUNCTION pymem.search_chunks_on_standby(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                               p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pymem: search_chunks_on_standby serves hot standbys; on the primary call search_chunks'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search', pymem.search_digest(p_query, p_k));
    RETURN QUERY SELECT * FROM pymem.search_rows(p_user_hash, p_query, p_k);
END
$$;

-- The result row of a search served by a standby: the ids it returned, in the
-- order returned, recorded once per ticket, under a committed, unexpired search
-- intent of the same tenant. Only ids of the tenant's rows are kept. The client
-- reports them, so a result row proves what the client says it received; the
-- intent is what proves the read happened.
CREATE FUNCTION pymem.read_result(p_user_hash char(64), p_ticket uuid, p_operation text, p_ids uuid[])
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_operation IS DISTINCT FROM 'search' THEN
        RAISE EXCEPTION 'read_result: only searches are served by standbys' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (pymem.committed_intent(p_user_hash, p_ticket)).operation <> p_operation THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One result per ticket: lock the chain first, so two callers cannot both pass.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    IF EXISTS (SELECT 1 FROM pymem.audit_log a WHERE a.user_hash = p_user_hash AND a.ticket = p_ticket
                  AND a.phase = 'result') THEN
        RAISE EXCEPTION 'pymem: this read already has its result row' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'result', p_ticket, NULL, ARRAY(
        SELECT u.id FROM unnest(coalesce(p_ids, '{}')) WITH ORDINALITY AS u(id, n)
         WHERE EXISTS (SELECT 1 FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = u.id)
         ORDER BY u.n));
END
$$;

-- The tenant's chunks, sealed, in id order after p_after (keyset paging),
-- optionally only those under p_key_ids. For re-keying and compliance export.
CREATE FUNCTION pymem.export_chunks(p_user_hash char(64), p_ticket uuid, p_key_ids integer[], p_after uuid,
                                    p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'export', pymem.export_digest(p_key_ids, p_limit));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash
           AND (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'export', 'result', p_ticket, NULL, v_ids);
END
$$;

-- Replace the tenant's ciphertexts with re-sealed ones under p_new_key_id (AAD
-- v2). A row is only touched while it is still under the key it was read with,
-- so a re-run or a concurrent rotator never re-seals twice.
CREATE FUNCTION pymem.rekey_chunks(p_user_hash char(64), p_ids uuid[], p_read_key_ids integer[],
                                   p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[],
                                   p_new_key_id integer, p_aad_version smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids      uuid[] := '{}';
    v_old_keys integer[] := '{}';
    v_row      record;
    v_id       uuid;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.check_aad_version(p_aad_version);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
                        AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
    LOOP
        UPDATE pymem.memory_chunks c
           SET text_cipher = v_row.text_cipher, meta_cipher = v_row.meta_cipher, emb_cipher = v_row.emb_cipher,
               key_id = p_new_key_id, aad_version = p_aad_version
         WHERE c.user_hash = p_user_hash AND c.id = v_row.id AND c.key_id = v_row.read_key_id
        RETURNING c.id INTO v_id;
        IF FOUND THEN
            v_ids := v_ids || v_id;
            v_old_keys := v_old_keys || v_row.read_key_id;
        END IF;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, -1);
    PERFORM pymem.count_keys(p_user_hash, array_fill(p_new_key_id, ARRAY[cardinality(v_ids)]), 1);
    PERFORM pymem.warn_key_budget(ARRAY[p_new_key_id]);
    PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;

-- Delete the tenant's chunks of one document, or (p_doc_id NULL) all of them.
-- A delete that matched nothing is audited too.
CREATE FUNCTION pymem.delete_chunks(p_user_hash char(64), p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids  uuid[] := '{}';
    v_keys integer[] := '{}';
    v_row  record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        DELETE FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash AND (p_doc_id IS NULL OR c.doc_id = p_doc_id)
        RETURNING c.id, c.key_id
    LOOP
        v_ids := v_ids || v_row.id;
        v_keys := v_keys || v_row.key_id;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_keys, -1);
    PERFORM pymem.audit_append(p_user_hash, 'delete', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;

CREATE FUNCTION pymem.delete_document(p_user_hash char(64), p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF p_doc_id IS NULL THEN
        RAISE EXCEPTION 'delete_document: doc id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pymem.delete_chunks(p_user_hash, p_doc_id);
END
$$;

CREATE FUNCTION pymem.erase_tenant(p_user_hash char(64)) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN pymem.delete_chunks(p_user_hash, NULL);
END
$$;

-- Record the tenant's rows among p_ids (others are ignored). Idempotent: a row
-- already quarantined keeps its first record.
CREATE FUNCTION pymem.quarantine_chunks(p_user_hash char(64), p_ids uuid[], p_reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_row   record;
    v_count integer := 0;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    FOR v_row IN
        SELECT c.id, c.key_id FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
    LOOP
        INSERT INTO pymem.quarantined_chunks (user_hash, chunk_id, key_id, reason)
        VALUES (p_user_hash, v_row.id, v_row.key_id, p_reason) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END
$$;

-- ---------------------------------------------------------------------------
-- Verification, reworded so that no distributed join calls a function that
-- reads the coordinator-local v1 log (a worker has no such table).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_row       pymem.audit_log;
    v_tail      record;
    v_head      record;
    v_chain     char(64);
    v_expect    bigint;
    v_prev_hash bytea;
    v_prev_at   timestamptz;
BEGIN
    FOR v_row IN SELECT a.* FROM pymem.audit_log a ORDER BY a.user_hash, a.chain_pos LOOP
        IF v_chain IS NULL OR v_row.user_hash <> v_chain THEN
            -- A chain that began in v1 links its first v2 row to v1's last.
            v_chain := v_row.user_hash;
            SELECT * INTO v_tail FROM pymem.audit_v1_tail(v_chain);
            v_expect := coalesce(v_tail.chain_pos, 0) + 1;
            v_prev_hash := coalesce(v_tail.row_hash, '\x');
            v_prev_at := '-infinity';
        END IF;
        user_hash := v_row.user_hash;
        chain_pos := v_row.chain_pos;
        IF v_row.chain_pos <> v_expect THEN
            problem := 'missing row(s) before this one (deleted)';
            RETURN NEXT;
        ELSIF v_row.prev_hash <> v_prev_hash THEN
            problem := 'previous hash does not match (a predecessor was altered, or rows were reordered)';
            RETURN NEXT;
        END IF;
        IF v_row.row_hash <> pymem.audit_row_digest(v_row.prev_hash, v_row.user_hash, v_row.chain_pos, v_row.at,
                v_row.db_role, v_row.operation, v_row.phase, v_row.ticket, v_row.params_digest, v_row.chunk_ids,
                v_row.row_count, v_row.txid) THEN
            problem := 'row hash does not match (modified)';
            RETURN NEXT;
        ELSIF v_row.at < v_prev_at THEN
            problem := 'earlier than its predecessor (reordered)';
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
        v_prev_at := v_row.at;
    END LOOP;
    -- A head that disagrees with its chain's last row (see 0005). The join is on
    -- user_hash, so Citus runs it shard by shard; the v1 tail is read here.
    FOR v_head IN
        SELECT h.user_hash, h.chain_pos, h.row_hash, t.last_pos, l.row_hash AS last_hash
          FROM pymem.audit_chain_heads h
          LEFT JOIN LATERAL (SELECT max(a.chain_pos) AS last_pos FROM pymem.audit_log a
                              WHERE a.user_hash = h.user_hash) t ON true
          LEFT JOIN pymem.audit_log l ON l.user_hash = h.user_hash AND l.chain_pos = h.chain_pos
         WHERE t.last_pos IS DISTINCT FROM h.chain_pos OR l.row_hash IS DISTINCT FROM h.row_hash
         ORDER BY h.user_hash
    LOOP
        CONTINUE WHEN v_head.last_pos IS NULL
                  AND v_head.chain_pos = coalesce((SELECT v.chain_pos FROM pymem.audit_v1_tail(v_head.user_hash) v), 0);
        user_hash := v_head.user_hash;
        chain_pos := v_head.chain_pos;
        problem := CASE
            WHEN v_head.last_pos IS NULL THEN 'all rows of the chain are missing (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos < v_head.chain_pos THEN 'rows missing at the end (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos > v_head.chain_pos THEN 'rows beyond the head (head says ' || v_head.chain_pos || ')'
            ELSE 'the last row''s hash differs from the head' END;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT coalesce(p.user_hash, pymem.no_tenant()), p.chain_pos, 'v1: ' || p.problem
                   FROM pymem.audit_verify_v1() p;
END
$$;

-- ---------------------------------------------------------------------------
-- Grants.
-- ---------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pymem.read_intent(char, uuid, text, bytea),
    pymem.export_chunks(char, uuid, integer[], uuid, integer)
    TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION
    pymem.get_chunks(char, uuid, uuid[]),
    pymem.search_chunks(char, uuid, public.vector, integer),
    pymem.search_chunks_on_standby(char, uuid, public.vector, integer),
    pymem.read_result(char, uuid, text, uuid[]),
    pymem.delete_document(char, text),
    pymem.erase_tenant(char)
    TO pymem_app;
GRANT EXECUTE ON FUNCTION
    pymem.rekey_chunks(char, uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint),
    pymem.quarantine_chunks(char, uuid[], text)
    TO pymem_maintainer;

RESET ROLE;
