-- pymem 0003: search that keeps recall for tenants of every size.
--
-- A shared HNSW index filtered by RLS loses small tenants: pgvector walks
-- ef_search candidates, then RLS discards the other tenants' rows (measured on
-- 100k x 384-d: recall@10 0.25 for tenants under 100 rows, 0.59 under 1%).
-- So search_chunks picks a path per tenant size:
--   * up to pymem.exact_search_max_rows rows (default 3000): exact search over
--     the tenant's rows through the btree on user_hash. Recall 1.0, and cheap
--     because it reads only that tenant's rows (p95 < 1 ms under 1,000 rows).
--   * larger tenants: the HNSW index with iterative scan (relaxed order, then
--     re-sorted), which keeps walking the graph until k rows pass the filter.
--     A big tenant's rows are dense in the index, so few are discarded.
--     ef_search is 40 (pgvector's default) from a 10% share of all rows up,
--     where k matches are among the first candidates, else 100.
-- The tenant's size is its live-row count in key_stats (0002): one index probe,
-- exact in the same transactions as the writes. Counts only steer the choice of
-- path; either path returns correct, RLS-filtered rows.
-- The threshold is a plain setting a DBA can tune per database:
--   ALTER DATABASE app SET pymem.exact_search_max_rows = 8000;
--
-- The settings below are harmless to the exact branch: iterative_scan and
-- ef_search only affect HNSW scans, and enable_sort = off only penalises plans
-- that sort, and the exact branch has no alternative to its top-k sort. On the
-- HNSW branch it keeps the planner from choosing the btree plus a full sort of a
-- large tenant (its estimate for "user_hash = <context>" is 1/n_distinct).

-- Load pgvector's library so its hnsw.* settings are known in this session: a
-- non-superuser (the owner) may not name an unknown placeholder setting in a
-- function's SET clause, and a fresh migration session has not loaded it yet.
SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

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
