-- pymem 0005: route searches by the tenant's row count from key_stats.
--
-- 0002 chose exact vs HNSW search with a bounded count over the user_hash btree,
-- which reads up to exact_search_max_rows + 1 entries (0.3-0.5 ms for a large
-- tenant, a tenth of the whole budget). key_stats (0003) already holds each
-- tenant's live rows per key, maintained by statement triggers in the same
-- transactions as the writes, so one index probe gives the same number.
-- The HNSW branch also sizes ef_search by the tenant's share of all rows
-- (pg_class.reltuples, kept by autovacuum): 40 from 10% up, else 100.
-- Counts only steer the choice of path; either path returns correct, RLS-filtered
-- rows. A TRUNCATE, which fires no row triggers, zeroes the live counts (seal
-- counts are kept: they track each key's nonce budget).

-- Load pgvector's library so its hnsw.* settings are known in this session: a
-- non-superuser (the owner) may not name an unknown placeholder setting in a
-- function's SET clause, and a fresh migration session has not loaded it yet.
SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

CREATE INDEX key_stats_tenant ON pymem.key_stats (user_hash);

CREATE FUNCTION pymem.reset_live_counts() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pymem.reset_live_counts() FROM PUBLIC;

CREATE TRIGGER memory_chunks_key_stats_truncate AFTER TRUNCATE ON pymem.memory_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION pymem.reset_live_counts();

CREATE OR REPLACE FUNCTION pymem.search_chunks(p_query public.vector, p_k integer)
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

RESET ROLE;
