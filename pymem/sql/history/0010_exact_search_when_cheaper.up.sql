-- pymem 0010: exact search when it is cheaper than the graph. Valid on plain
-- PostgreSQL 16/18 and on Citus (search_rows_v2 is already distributed, its new
-- body reaches the workers with CREATE OR REPLACE; pymem.tuning is a reference
-- table, so its new default and value do too).
--
--   * An unfiltered search reads its tenant's rows exactly when that costs less
--     than walking the bucket graph with the ef_search it would need: when the
--     tenant has at most 20 x ef_search rows. Measured warm, as pymem_owner
--     under row security, per 10 queries of one tenant: the exact scan costs
--     0.9-1.0 us per row (0.4-1.3 across tenants) and the graph 12-21 us per
--     unit of ef_search, at 100k and at 1M rows. Before, the split was at a
--     fixed 3,000 rows: at 1M rows with shared topics a tenant of 3,024 rows
--     (share 0.26, ef_search 305) took 1.15 ms exact against 4-5 ms on the
--     graph, and at 100k a tenant of 2,955 rows (share 0.93, ef_search 100)
--     3.68 ms exact against 1.11 ms on the graph.
--   * pymem.tuning.exact_search_max_rows is now the most rows a tenant may
--     have and still be searched exactly (0 still sends every tenant to the
--     graph). Its default becomes 20,000, which the rule never reaches (ef_search
--     is at most 1,000); a value a DBA set is kept.
--   * Filtered searches are unchanged: filtered_exact_max_rows still splits them.
--   * Everything else is 0009's: settings pinned, row security on, the ef_search
--     rule, the bucket predicate.

SELECT '[0]'::public.vector;  -- load pgvector so its hnsw.* settings are known (see 0003)

SET LOCAL ROLE pymem_owner;

CREATE OR REPLACE FUNCTION pymem.search_rows_v2(p_user_hash char(64), p_query public.vector, p_k integer,
                                                p_filter bytea[], p_ends integer[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea)
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
    v_filtered  boolean;
    v_exact_max integer;
    v_rows      bigint;
    v_graph     double precision;
    v_ef        integer;
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_filter(p_filter, p_ends);
    v_filtered := cardinality(p_ends) > 0;
    SELECT CASE WHEN v_filtered THEN t.filtered_exact_max_rows ELSE t.exact_search_max_rows END
      INTO v_exact_max FROM pymem.tuning t;
    IF v_filtered THEN
        -- The first clause's tags reach the GIN index; tags_match checks them all.
        SELECT count(*) INTO v_rows FROM (
            SELECT 1 FROM pymem.memory_chunks c
             WHERE c.user_hash = p_user_hash
               AND c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]]
               AND (cardinality(p_ends) = 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
             LIMIT v_exact_max + 1) m;
    ELSE
        SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = p_user_hash;
    END IF;
    -- 2,000 = 20 x the least ef_search: below it the exact scan is always cheaper.
    IF v_rows > v_exact_max OR (NOT v_filtered AND v_rows > 2000) THEN
        -- A filtered scan sees about k / share candidates before it has k matches;
        -- ef_search covers 8x that (measured at 1M rows with shared topics: 2x gave
        -- recall@10 0.969, 4x 0.976, 8x 0.995 for tenants of 3k-10k rows), at
        -- least 100 (at 40, pgvector's default, whole queries of large tenants
        -- came back empty-handed), at least 1/400 of the graph's rows (0009: at
        -- 1M rows, ef_search 100 on a 93k-row graph left 2 of 40 queries of the
        -- tenant holding 90% of it at recall 0.1 and 0.0), and at most 1000. The
        -- filtered count stops at v_exact_max + 1, a lower bound: the estimate
        -- errs towards a wider search.
        v_graph := pymem.search_graph_rows(p_user_hash);
        v_ef := least(1000, greatest(100, ceil(v_graph / 400), ceil(8 * p_k / least(1.0, v_rows / v_graph))));
    END IF;
    -- The graph when the tenant is too large for the exact scan, or when the scan
    -- would read more than 20 rows per unit of ef_search (0010: measured, the
    -- scan costs about 1 us a row, the graph 12-21 us per unit of ef_search).
    -- No graph (its index dropped for a bulk load): the exact scan.
    IF v_rows > v_exact_max OR (NOT v_filtered AND v_graph IS NOT NULL AND v_rows > 20 * v_ef) THEN
        PERFORM set_config('hnsw.ef_search', v_ef::text, true);  -- local to this call
        -- The bucket predicate is a literal, so the planner proves the tenant's
        -- partial index applies; the rest are parameters.
        RETURN QUERY EXECUTE format($sql$
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                       c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) $2 AS distance, c.ref_cipher
                  FROM pymem.memory_chunks c
                 WHERE c.user_hash OPERATOR(pg_catalog.=) $1
                   AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) %s
                   AND (NOT $4 OR c.meta_tags OPERATOR(pg_catalog.&&) $5[1:$6[1]])
                   AND (pg_catalog.cardinality($6) OPERATOR(pg_catalog.<=) 1
                        OR pymem.tags_match(c.meta_tags, $5, $6))
                 ORDER BY c.embedding OPERATOR(public.<=>) $2
                 LIMIT $3)
            SELECT * FROM hits h ORDER BY h.distance$sql$,  -- relaxed_order: re-sort the k hits
            pymem.search_bucket(p_user_hash))
            USING p_user_hash, p_query, p_k, v_filtered, p_filter, p_ends;
    ELSIF v_rows > 0 AND v_filtered THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the rows
        -- come from the GIN (or btree) index and the top k are exact.
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, c.embedding OPERATOR(public.<=>) p_query, c.ref_cipher
              FROM pymem.memory_chunks c
             WHERE c.user_hash = p_user_hash
               AND c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]]
               AND (cardinality(p_ends) = 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k;
    ELSIF v_rows > 0 THEN
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, c.embedding OPERATOR(public.<=>) p_query, c.ref_cipher
              FROM pymem.memory_chunks c
             WHERE c.user_hash = p_user_hash
             ORDER BY (c.embedding OPERATOR(public.<=>) p_query) + 0
             LIMIT p_k;
    END IF;
END
$$;

ALTER TABLE pymem.tuning ALTER COLUMN exact_search_max_rows SET DEFAULT 20000;
UPDATE pymem.tuning SET exact_search_max_rows = 20000 WHERE exact_search_max_rows = 3000;

RESET ROLE;
