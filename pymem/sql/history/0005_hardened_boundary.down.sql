-- pymem 0005 down: back to the 0004 API and audit log.
-- Loses what only 0005 holds: the v2 audit rows (the v1 log becomes pymem.audit_log
-- again), the key registry, the quarantine list and the tuning row. Rows sealed
-- with AAD v2 no longer open with a pre-0005 client: re-seal them before going back.

SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

-- 0005 pinned row_security on every definer function; earlier revisions did not.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = 'pymem'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('ALTER FUNCTION %s RESET row_security', v_fn);
    END LOOP;
END
$$;

DROP TRIGGER memory_chunks_audit_direct ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_audit_truncate ON pymem.memory_chunks;
DROP FUNCTION pymem.audit_direct_write();
DROP FUNCTION pymem.search_chunks(uuid, public.vector, integer);
DROP FUNCTION pymem.get_chunks(uuid, uuid[]);
DROP FUNCTION pymem.export_chunks(uuid, integer[], uuid, integer);
DROP FUNCTION pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint);
DROP FUNCTION pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[], smallint);
DROP FUNCTION pymem.check_aad_version(smallint);
DROP FUNCTION pymem.read_intent(uuid, text, bytea);
DROP FUNCTION pymem.redeem_read_intent(uuid, text, bytea);
DROP FUNCTION pymem.search_digest(public.vector, integer);
DROP FUNCTION pymem.get_digest(uuid[]);
DROP FUNCTION pymem.export_digest(integer[], integer);
DROP FUNCTION pymem.audit_verify();
DROP FUNCTION pymem.audit_heads();
DROP FUNCTION pymem.audit_row_hash(char, bigint);
DROP FUNCTION pymem.audit_v1_tail(char);
DROP FUNCTION pymem.audit_append(char, text, text, uuid, bytea, uuid[]);
DROP FUNCTION pymem.audit_lock_chain(char);
DROP FUNCTION pymem.audit_chain();
DROP FUNCTION pymem.audit_row_digest(bytea, char, bigint, timestamptz, text, text, text, uuid, bytea, uuid[], integer, xid8);
DROP FUNCTION pymem.register_encryption_key(integer);
DROP FUNCTION pymem.quarantine_chunks(uuid[], text);
DROP FUNCTION pymem.quarantined();
DROP TABLE pymem.audit_chain_heads;
DROP TABLE pymem.audit_log;
DROP FUNCTION pymem.no_tenant();
DROP TABLE pymem.quarantined_chunks;
ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_key_registered;
ALTER TABLE pymem.memory_chunks DROP COLUMN aad_version;
DROP TABLE pymem.encryption_keys;
DROP TABLE pymem.tuning;

-- The 0001 audit log, its chain trigger and its writers.
ALTER TABLE pymem.audit_log_v1 RENAME TO audit_log;
ALTER FUNCTION pymem.audit_row_digest_v1(bytea, bigint, timestamptz, text, char, text, uuid[], integer, xid8, bigint)
    RENAME TO audit_row_digest;
ALTER FUNCTION pymem.audit_verify_v1() RENAME TO audit_verify;
CREATE OR REPLACE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), seq bigint, chain_pos bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row       record;
    v_chain     char(64);
    v_first     boolean := true;
    v_expect    bigint;
    v_prev_hash bytea;
    v_broken    boolean;
BEGIN
    FOR v_row IN
        SELECT a.*, row_number() OVER (PARTITION BY a.user_hash ORDER BY a.seq) AS seq_rank
          FROM pymem.audit_log a
         ORDER BY a.user_hash NULLS FIRST, a.chain_pos
    LOOP
        IF v_first OR v_row.user_hash IS DISTINCT FROM v_chain THEN
            v_first := false;
            v_chain := v_row.user_hash;
            v_expect := 1;
            v_prev_hash := '\x';
            v_broken := false;
        END IF;
        CONTINUE WHEN v_broken;
        problem := CASE
            WHEN v_row.chain_pos <> v_expect THEN 'missing row(s) before this one (deleted)'
            WHEN v_row.seq_rank <> v_row.chain_pos THEN 'out of order (reordered)'
            WHEN v_row.prev_hash <> v_prev_hash THEN 'previous hash does not match (predecessor altered)'
            WHEN v_row.row_hash <> pymem.audit_row_digest(v_row.prev_hash, v_row.seq, v_row.at, v_row.db_role,
                     v_row.user_hash, v_row.operation, v_row.chunk_ids, v_row.row_count, v_row.txid,
                     v_row.chain_pos) THEN 'row hash does not match (modified)'
        END;
        IF problem IS NOT NULL THEN
            user_hash := v_row.user_hash;
            seq := v_row.seq;
            chain_pos := v_row.chain_pos;
            v_broken := true;
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
    END LOOP;
END
$$;

CREATE FUNCTION pymem.audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prev record;
BEGIN
    -- Serialise writers of the same tenant chain until commit, so each new row
    -- links to the row committed just before it. Other tenants do not wait.
    PERFORM pg_advisory_xact_lock(hashtextextended('pymem.audit:' || coalesce(NEW.user_hash, '-'), 0));
    SELECT a.chain_pos, a.row_hash INTO v_prev
      FROM pymem.audit_log a
     WHERE a.user_hash IS NOT DISTINCT FROM NEW.user_hash
     ORDER BY a.chain_pos DESC
     LIMIT 1;
    NEW.chain_pos := coalesce(v_prev.chain_pos, 0) + 1;
    NEW.prev_hash := coalesce(v_prev.row_hash, '\x'::bytea);
    NEW.row_hash := pymem.audit_row_digest(NEW.prev_hash, NEW.seq, NEW.at, NEW.db_role, NEW.user_hash,
                                           NEW.operation, NEW.chunk_ids, NEW.row_count, NEW.txid, NEW.chain_pos);
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON pymem.audit_log
    FOR EACH ROW EXECUTE FUNCTION pymem.audit_chain_link();

CREATE FUNCTION pymem.audit_append(p_operation text, p_user_hash char(64), p_chunk_ids uuid[])
    RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO pymem.audit_log (operation, user_hash, chunk_ids, row_count, chain_pos, prev_hash, row_hash)
    VALUES (p_operation, p_user_hash, p_chunk_ids, cardinality(p_chunk_ids), 0, '\x', '\x');
END;

-- Writes are audited by trigger, so even a superuser's direct DML leaves a trace.
-- One audit row per statement and tenant, listing the chunk ids touched.
CREATE FUNCTION pymem.audit_chunk_writes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
    v_logged boolean := false;
BEGIN
    IF TG_OP = 'DELETE' THEN
        FOR v_row IN SELECT o.user_hash, array_agg(o.id ORDER BY o.id) AS ids FROM old_rows o GROUP BY o.user_hash LOOP
            PERFORM pymem.audit_append('delete', v_row.user_hash, v_row.ids);
            v_logged := true;
        END LOOP;
    ELSE
        FOR v_row IN SELECT n.user_hash, array_agg(n.id ORDER BY n.id) AS ids FROM new_rows n GROUP BY n.user_hash LOOP
            PERFORM pymem.audit_append(lower(TG_OP), v_row.user_hash, v_row.ids);
            v_logged := true;
        END LOOP;
    END IF;
    -- A write that matched nothing (say, another tenant's doc id) is an attempt
    -- worth a trace too: log it under the caller's tenant with no ids.
    IF NOT v_logged THEN
        PERFORM pymem.audit_append(lower(TG_OP), pymem.current_tenant(), '{}');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_chunks_audit_insert AFTER INSERT ON pymem.memory_chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_chunk_writes();
CREATE TRIGGER memory_chunks_audit_update AFTER UPDATE ON pymem.memory_chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_chunk_writes();
CREATE TRIGGER memory_chunks_audit_delete AFTER DELETE ON pymem.memory_chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pymem.audit_chunk_writes();


-- The 0001-0003 API.
CREATE FUNCTION pymem.put_chunks(
    p_user_hash    char(64),
    p_ids          uuid[],
    p_doc_ids      text[],
    p_sources      text[],
    p_text_ciphers bytea[],
    p_meta_ciphers bytea[],
    p_emb_ciphers  bytea[],
    p_key_ids      integer[],
    p_embeddings   public.vector[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := cardinality(p_ids);
    v_count integer;
BEGIN
    IF v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'put_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'put_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pymem.memory_chunks
        (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding)
    SELECT u.id, p_user_hash, u.doc_id, u.source, u.text_cipher, u.meta_cipher, u.emb_cipher, u.key_id, u.embedding
      FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_key_ids, p_embeddings)
           AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE FUNCTION pymem.get_chunk(p_id uuid)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, created_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, created_at IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.created_at
          FROM pymem.memory_chunks c
         WHERE c.id = p_id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append('get', pymem.current_tenant(), v_ids);
END
$$;

CREATE FUNCTION pymem.search_chunks(p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   key_id integer, distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET hnsw.iterative_scan = 'relaxed_order'
    SET hnsw.ef_search = '100'
    SET enable_sort = off
AS $$
DECLARE
    v_tenant    char(64) := pymem.current_tenant();
    v_exact_max integer := coalesce(nullif(current_setting('pymem.exact_search_max_rows', true), '')::integer, 3000);
    v_rows      integer;
    v_ids       uuid[] := '{}';
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The tenant's live rows, kept exact by the key_stats triggers in the same
    -- transactions as the writes: one index probe instead of counting up to
    -- v_exact_max index entries. Without a tenant context it is 0: nothing found.
    SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = v_tenant;
    IF v_rows > v_exact_max THEN
        -- A tenant with a large share of all rows finds k matches among pgvector's
        -- default 40 candidates (recall >= 0.99 measured); 100 is for the rest.
        -- The function's SET clause keeps this change local to the call.
        IF v_rows >= 0.1 * (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c
                             WHERE c.oid = 'pymem.memory_chunks'::regclass) THEN
            PERFORM set_config('hnsw.ef_search', '40', true);
        END IF;
        FOR id, doc_id, source, text_cipher, meta_cipher, key_id, distance IN
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.key_id,
                       c.embedding OPERATOR(public.<=>) p_query AS distance
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
        FOR id, doc_id, source, text_cipher, meta_cipher, key_id, distance IN
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.key_id,
                   c.embedding OPERATOR(public.<=>) p_query
              FROM pymem.memory_chunks c
             WHERE c.user_hash = v_tenant
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k
        LOOP
            v_ids := v_ids || id;
            RETURN NEXT;
        END LOOP;
    END IF;
    PERFORM pymem.audit_append('search', v_tenant, v_ids);
END
$$;

CREATE FUNCTION pymem.export_chunks(p_key_ids integer[], p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.embedding
          FROM pymem.memory_chunks c
         WHERE (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append('get', pymem.current_tenant(), v_ids);
END
$$;

CREATE FUNCTION pymem.rekey_chunks(p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[],
                                   p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_new_key_id integer)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE pymem.memory_chunks c
       SET text_cipher = u.text_cipher, meta_cipher = u.meta_cipher, emb_cipher = u.emb_cipher,
           key_id = p_new_key_id
      FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
           AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
     WHERE c.id = u.id AND c.key_id = u.read_key_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION pymem.delete_document(p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    DELETE FROM pymem.memory_chunks c WHERE c.doc_id = p_doc_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION pymem.erase_tenant() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    -- RLS limits this to the current tenant; no context deletes nothing.
    DELETE FROM pymem.memory_chunks c WHERE true;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION pymem.track_key_stats() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_warn bigint := coalesce(nullif(current_setting('pymem.key_seal_warn_threshold', true), '')::bigint,
                              1073741824);  -- 2^30: a quarter of AES-GCM's 2^32 random-nonce budget
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

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[]),
    pymem.get_chunk(uuid),
    pymem.search_chunks(public.vector, integer)
    TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.export_chunks(integer[], uuid, integer) TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer) TO pymem_maintainer;

RESET ROLE;
