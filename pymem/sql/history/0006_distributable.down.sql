-- pymem 0006 down: back to the 0005 schema. Single-node only: undistribute first.

DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                    WHERE p.logicalrelid = 'pymem.memory_chunks'::regclass) THEN
            RAISE EXCEPTION 'pymem 0006 down: pymem.memory_chunks is distributed; undistribute the tables first (Citus undistribute_table)';
        END IF;
    END IF;
END
$$;

SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

DROP FUNCTION pymem.read_intent(char, uuid, text, bytea);
DROP FUNCTION pymem.redeem_read_intent(char, uuid, text, bytea);
DROP FUNCTION pymem.committed_intent(char, uuid);
DROP FUNCTION pymem.get_chunks(char, uuid, uuid[]);
DROP FUNCTION pymem.search_chunks(char, uuid, public.vector, integer);
DROP FUNCTION pymem.search_chunks_on_standby(char, uuid, public.vector, integer);
DROP FUNCTION pymem.search_rows(char, public.vector, integer);
DROP FUNCTION pymem.read_result(char, uuid, text, uuid[]);
DROP FUNCTION pymem.export_chunks(char, uuid, integer[], uuid, integer);
DROP FUNCTION pymem.rekey_chunks(char, uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint);
DROP FUNCTION pymem.delete_document(char, text);
DROP FUNCTION pymem.erase_tenant(char);
DROP FUNCTION pymem.delete_chunks(char, text);
DROP FUNCTION pymem.quarantine_chunks(char, uuid[], text);

DROP TRIGGER memory_chunks_truncate ON pymem.memory_chunks;
DROP FUNCTION pymem.chunks_truncated();
DROP TRIGGER memory_chunks_key_stats_direct ON pymem.memory_chunks;
DROP FUNCTION pymem.count_direct_write();

CREATE OR REPLACE FUNCTION pymem.embedding_dim() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT a.atttypmod FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = 'pymem.memory_chunks'::regclass AND a.attname = 'embedding';
END;

DROP POLICY tenant_isolation ON pymem.memory_chunks;
ALTER TABLE pymem.memory_chunks ALTER COLUMN user_hash TYPE char(64);
CREATE POLICY tenant_isolation ON pymem.memory_chunks
    FOR ALL TO pymem_app, pymem_owner
    USING (user_hash = (SELECT nullif(current_setting('app.user_hash', true), '')::char(64)))
    WITH CHECK (user_hash = (SELECT nullif(current_setting('app.user_hash', true), '')::char(64)));
ALTER TABLE pymem.audit_log ALTER COLUMN user_hash TYPE char(64);
ALTER TABLE pymem.audit_chain_heads ALTER COLUMN user_hash TYPE char(64);
ALTER TABLE pymem.quarantined_chunks DROP CONSTRAINT quarantined_chunks_user_hash_check;
ALTER TABLE pymem.quarantined_chunks ALTER COLUMN user_hash TYPE char(64);
ALTER TABLE pymem.key_stats DROP CONSTRAINT key_stats_user_hash_check;
ALTER TABLE pymem.key_stats ALTER COLUMN user_hash TYPE char(64);

ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_pkey;
ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_pkey PRIMARY KEY (id);

CREATE FUNCTION pymem.audit_chain() RETURNS char(64)
    LANGUAGE sql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN coalesce(pymem.current_tenant(), pymem.no_tenant());

CREATE OR REPLACE FUNCTION pymem.audit_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pymem.audit_append(pymem.no_tenant(), 'truncate', 'write', NULL, NULL, '{}');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.audit_append(OLD.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[OLD.id]);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_hash <> OLD.user_hash) THEN
        PERFORM pymem.audit_append(NEW.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_audit_truncate BEFORE TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_direct_write();

CREATE FUNCTION pymem.read_intent(p_ticket uuid, p_operation text, p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_ticket IS NULL OR p_operation IS NULL OR p_operation NOT IN ('search', 'get', 'export')
       OR p_params_digest IS NULL OR octet_length(p_params_digest) <> 32 THEN
        RAISE EXCEPTION 'read_intent: needs a ticket, an operation (search, get, export) and a 32-byte digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(pymem.audit_chain(), p_operation, 'intent', p_ticket, p_params_digest, '{}');
END
$$;

CREATE FUNCTION pymem.redeem_read_intent(p_ticket uuid, p_operation text, p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_intent pymem.audit_log;
BEGIN
    SELECT a.* INTO v_intent FROM pymem.audit_log a
     WHERE a.user_hash = pymem.audit_chain() AND a.ticket = p_ticket AND a.phase = 'intent';
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
    v_ids uuid[];
BEGIN
    IF v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'put_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'put_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the caller's chain head, then rows, then key_stats (triggers).
    -- The caller's own chain, never p_user_hash's: RLS rejects a foreign tenant
    -- below, and a caller must not be able to lock another tenant's chain.
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH inserted AS (
        INSERT INTO pymem.memory_chunks
            (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding, aad_version)
        SELECT u.id, p_user_hash, u.doc_id, u.source, u.text_cipher, u.meta_cipher, u.emb_cipher, u.key_id,
               u.embedding, p_aad_version
          FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_key_ids,
                      p_embeddings) AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding)
        RETURNING id)
    SELECT coalesce(array_agg(i.id ORDER BY i.id), '{}') INTO v_ids FROM inserted i;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'insert', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE FUNCTION pymem.get_chunks(p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'get_chunks: give between 1 and 10000 ids' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'get', pymem.get_digest(p_ids));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.id = ANY (p_ids)
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'get', 'result', p_ticket, NULL, v_ids);
END
$$;

CREATE FUNCTION pymem.search_chunks(p_ticket uuid, p_query public.vector, p_k integer)
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
    v_tenant    char(64) := pymem.current_tenant();
    v_exact_max integer := (SELECT t.exact_search_max_rows FROM pymem.tuning t);
    v_rows      bigint;
    v_ids       uuid[] := '{}';
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'search', pymem.search_digest(p_query, p_k));
    -- The tenant's live rows (key_stats, exact in the writers' transactions) pick
    -- the path: exact search for small tenants, the HNSW index for large ones.
    SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = v_tenant;
    IF v_rows > v_exact_max THEN
        -- A tenant with a large share of all rows finds k matches among pgvector's
        -- default 40 candidates; 100 is for the rest. Local to this call.
        IF v_rows >= 0.1 * (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c
                             WHERE c.oid = 'pymem.memory_chunks'::regclass) THEN
            PERFORM set_config('hnsw.ef_search', '40', true);
        END IF;
        FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                       c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance
                  FROM pymem.memory_chunks c
                 ORDER BY c.embedding OPERATOR(public.<=>) p_query
                 LIMIT p_k)
            SELECT * FROM hits h ORDER BY h.distance  -- relaxed_order: re-sort the k hits
        LOOP
            v_ids := v_ids || id;
            RETURN NEXT;
        END LOOP;
    ELSIF v_rows > 0 THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the planner
        -- reads the tenant's rows through the btree and keeps the exact top k.
        FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, c.embedding OPERATOR(public.<=>) p_query
              FROM pymem.memory_chunks c
             WHERE c.user_hash = v_tenant
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k
        LOOP
            v_ids := v_ids || id;
            RETURN NEXT;
        END LOOP;
    END IF;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'search', 'result', p_ticket, NULL, v_ids);
END
$$;

CREATE FUNCTION pymem.export_chunks(p_ticket uuid, p_key_ids integer[], p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_ticket, 'export', pymem.export_digest(p_key_ids, p_limit));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'export', 'result', p_ticket, NULL, v_ids);
END
$$;

CREATE FUNCTION pymem.rekey_chunks(p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[],
                                   p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_new_key_id integer,
                                   p_aad_version smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.check_aad_version(p_aad_version);
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH changed AS (
        UPDATE pymem.memory_chunks c
           SET text_cipher = u.text_cipher, meta_cipher = u.meta_cipher, emb_cipher = u.emb_cipher,
               key_id = p_new_key_id, aad_version = p_aad_version
          FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
               AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
         WHERE c.id = u.id AND c.key_id = u.read_key_id
        RETURNING c.id)
    SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') INTO v_ids FROM changed c;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'update', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE FUNCTION pymem.delete_document(p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    WITH deleted AS (DELETE FROM pymem.memory_chunks c WHERE c.doc_id = p_doc_id RETURNING c.id)
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO v_ids FROM deleted d;
    -- A delete that matched nothing (say, another tenant's doc id) is audited too.
    PERFORM pymem.audit_append(pymem.audit_chain(), 'delete', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE FUNCTION pymem.erase_tenant() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.audit_lock_chain(pymem.audit_chain());
    -- RLS limits this to the current tenant; no context deletes nothing.
    WITH deleted AS (DELETE FROM pymem.memory_chunks c WHERE true RETURNING c.id)
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO v_ids FROM deleted d;
    PERFORM pymem.audit_append(pymem.audit_chain(), 'delete', 'write', NULL, NULL, v_ids);
    RETURN cardinality(v_ids);
END
$$;

CREATE FUNCTION pymem.track_key_stats() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
    v_key  record;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE pymem.key_stats s SET live_rows = s.live_rows - o.n
          FROM (SELECT key_id, user_hash, count(*) AS n FROM old_rows GROUP BY 1, 2) o
         WHERE s.key_id = o.key_id AND s.user_hash = o.user_hash;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO pymem.key_stats AS s (key_id, user_hash, live_rows, seals)
        SELECT key_id, user_hash, count(*), 3 * count(*) FROM new_rows GROUP BY 1, 2
        ON CONFLICT (key_id, user_hash)
        DO UPDATE SET live_rows = s.live_rows + excluded.live_rows, seals = s.seals + excluded.seals;
        FOR v_key IN
            SELECT s.key_id, sum(s.seals) AS seals FROM pymem.key_stats s
             WHERE s.key_id IN (SELECT DISTINCT key_id FROM new_rows) GROUP BY s.key_id
        LOOP
            IF v_key.seals >= v_warn THEN
                RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it',
                    v_key.key_id, v_key.seals, v_warn
                    USING HINT = 'pymem rotate-key re-seals rows under the active key';
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row       pymem.audit_log;
    v_tail      record;
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
    -- The head row changes in the same transaction as each chain row: a head
    -- ahead of the log means rows were deleted from the end. Deleting a whole
    -- chain together with its head is caught against a signed checkpoint only
    -- (pymem audit-checkpoint / audit-verify --checkpoint).
    FOR user_hash, chain_pos, problem IN
        SELECT h.user_hash, h.chain_pos,
               CASE WHEN t.last_pos IS NULL THEN 'all rows of the chain are missing (head says ' || h.chain_pos || ')'
                    WHEN t.last_pos < h.chain_pos THEN 'rows missing at the end (head says ' || h.chain_pos || ')'
                    WHEN t.last_pos > h.chain_pos THEN 'rows beyond the head (head says ' || h.chain_pos || ')'
                    ELSE 'the last row''s hash differs from the head' END
          FROM pymem.audit_chain_heads h
          LEFT JOIN LATERAL (SELECT max(a.chain_pos) AS last_pos FROM pymem.audit_log a
                              WHERE a.user_hash = h.user_hash) t ON true
          LEFT JOIN pymem.audit_log l ON l.user_hash = h.user_hash AND l.chain_pos = h.chain_pos
          LEFT JOIN LATERAL pymem.audit_v1_tail(h.user_hash) v ON true
         WHERE NOT (t.last_pos IS NULL AND h.chain_pos = coalesce(v.chain_pos, 0))  -- no v2 rows yet
           AND (t.last_pos IS DISTINCT FROM h.chain_pos OR l.row_hash IS DISTINCT FROM h.row_hash)
    LOOP
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT coalesce(p.user_hash, pymem.no_tenant()), p.chain_pos, 'v1: ' || p.problem
                   FROM pymem.audit_verify_v1() p;
END
$$;

CREATE FUNCTION pymem.quarantine_chunks(p_ids uuid[], p_reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO pymem.quarantined_chunks (user_hash, chunk_id, key_id, reason)
    SELECT c.user_hash, c.id, c.key_id, p_reason FROM pymem.memory_chunks c WHERE c.id = ANY (p_ids)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Named after the audit triggers on purpose: same-event triggers fire in name
-- order, so every writer takes the audit-chain lock before the key_stats row lock.
CREATE TRIGGER memory_chunks_key_stats_insert AFTER INSERT ON pymem.memory_chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();
CREATE TRIGGER memory_chunks_key_stats_update AFTER UPDATE ON pymem.memory_chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();
CREATE TRIGGER memory_chunks_key_stats_delete AFTER DELETE ON pymem.memory_chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.track_key_stats();

CREATE FUNCTION pymem.reset_live_counts() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_key_stats_truncate AFTER TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.reset_live_counts();

DROP FUNCTION pymem.count_keys(char, integer[], integer);
DROP FUNCTION pymem.warn_key_budget(integer[]);
DROP FUNCTION pymem.index_rows(char);
DROP FUNCTION pymem.chunks_distributed();
DROP FUNCTION pymem.check_tenant(char);

CREATE OR REPLACE FUNCTION pymem.audit_append(p_user_hash char(64), p_operation text, p_phase text, p_ticket uuid,
                                   p_params_digest bytea, p_chunk_ids uuid[])
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_head pymem.audit_chain_heads := pymem.audit_lock_chain(p_user_hash);
    v_row  pymem.audit_log;
BEGIN
    v_row.user_hash := p_user_hash;
    v_row.chain_pos := v_head.chain_pos + 1;
    v_row.at := greatest(clock_timestamp(), v_head.at);
    v_row.db_role := session_user;
    v_row.operation := p_operation;
    v_row.phase := p_phase;
    v_row.ticket := p_ticket;
    v_row.params_digest := p_params_digest;
    v_row.chunk_ids := p_chunk_ids;
    v_row.row_count := cardinality(p_chunk_ids);
    v_row.txid := pg_current_xact_id();
    v_row.prev_hash := v_head.row_hash;
    v_row.row_hash := pymem.audit_row_digest(v_row.prev_hash, v_row.user_hash, v_row.chain_pos, v_row.at,
        v_row.db_role, v_row.operation, v_row.phase, v_row.ticket, v_row.params_digest, v_row.chunk_ids,
        v_row.row_count, v_row.txid);
    INSERT INTO pymem.audit_log VALUES (v_row.*);
    UPDATE pymem.audit_chain_heads h SET chain_pos = v_row.chain_pos, row_hash = v_row.row_hash, at = v_row.at
     WHERE h.user_hash = p_user_hash;
    RETURN v_row.chain_pos;
END
$$;

-- Back to the BEGIN ATOMIC bodies of 0002 and 0005.
CREATE OR REPLACE FUNCTION pymem.key_usage()
    RETURNS TABLE (key_id integer, live_rows bigint, seals bigint, tenants bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.key_id, sum(s.live_rows)::bigint, sum(s.seals)::bigint, count(*) FILTER (WHERE s.live_rows > 0)
      FROM pymem.key_stats s GROUP BY s.key_id ORDER BY s.key_id;
END;

CREATE OR REPLACE FUNCTION pymem.tenants_with_keys(p_key_ids integer[])
    RETURNS TABLE (user_hash char(64), live_rows bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.user_hash, sum(s.live_rows)::bigint FROM pymem.key_stats s
     WHERE s.key_id = ANY (p_key_ids) AND s.live_rows > 0
     GROUP BY s.user_hash ORDER BY s.user_hash;
END;

CREATE OR REPLACE FUNCTION pymem.quarantined()
    RETURNS TABLE (user_hash char(64), chunk_id uuid, key_id integer, reason text, at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT q.user_hash, q.chunk_id, q.key_id, q.reason, q.at FROM pymem.quarantined_chunks q
     ORDER BY q.user_hash, q.chunk_id;
END;

CREATE OR REPLACE FUNCTION pymem.audit_heads() RETURNS TABLE (user_hash char(64), chain_pos bigint, row_hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT h.user_hash, h.chain_pos, h.row_hash FROM pymem.audit_chain_heads h WHERE h.chain_pos > 0
     ORDER BY h.user_hash;
END;

-- Pin row_security on every definer function, as 0005 did.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = 'pymem'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('ALTER FUNCTION %s SET row_security = on', v_fn);
    END LOOP;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pymem.search_digest(public.vector, integer),
    pymem.get_digest(uuid[]),
    pymem.export_digest(integer[], integer),
    pymem.read_intent(uuid, text, bytea),
    pymem.export_chunks(uuid, integer[], uuid, integer)
    TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION
    pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[], smallint),
    pymem.get_chunks(uuid, uuid[]),
    pymem.search_chunks(uuid, public.vector, integer)
    TO pymem_app;
GRANT EXECUTE ON FUNCTION
    pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint),
    pymem.register_encryption_key(integer),
    pymem.quarantine_chunks(uuid[], text)
    TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.quarantined() TO pymem_maintainer, pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_verify(), pymem.audit_heads(),
    pymem.audit_row_hash(char, bigint) TO pymem_auditor;

GRANT EXECUTE ON FUNCTION pymem.delete_document(text), pymem.erase_tenant() TO pymem_app;

RESET ROLE;
