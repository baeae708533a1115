-- pymem 0012: a search that walks its bucket graph returns its hits in distance
-- order, and plans once per session. Valid on plain PostgreSQL 16/18 and on
-- Citus (search_rows_v2 is already distributed; CREATE OR REPLACE reaches the
-- workers).
--
--   * Order. iterative_scan = relaxed_order can return a nearer row after a
--     farther one; the k hits were re-sorted over a materialized CTE with
--     ORDER BY distance. From PostgreSQL 17 the planner takes the CTE's rows
--     as sorted by that key already and drops the sort: measured on PG 18 at
--     100k rows with every tenant forced onto the graph, 3 of 180 searches
--     of 25-41-row tenants (k = 40) came back out of order. "+ 0" (pgvector's
--     documented form) keeps the sort. PG 16 sorted all along.
--   * Plans. The graph query named its bucket as a literal through EXECUTE,
--     so it was planned on every call, and planning weighs all 64 partial
--     indexes: 0.40 ms, against 0.10 ms with only the tenant's graph present
--     (20k rows, EXPLAIN as pymem_owner). Now the function holds one static
--     statement per bucket, generated below, and on plain PostgreSQL each
--     keeps one generic plan; with Citus installed, custom plans, which its
--     router planner needs (as 0011's exact path).
--   * Everything else is 0011's: settings pinned, row security, the
--     exact-or-graph rule, ef_search, the exact paths.

SELECT '[0]'::public.vector;  -- load pgvector so its hnsw.* settings are known (see 0003)

SET LOCAL ROLE pymem_owner;

-- The 64 statements differ only in their bucket literal: they are generated
-- from one template instead of being written out.
DO $generate$
DECLARE
    v_cases text := '';
BEGIN
    FOR v_bucket IN 0..63 LOOP
        v_cases := v_cases || replace($case$
            WHEN @BUCKET@ THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) @BUCKET@
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;$case$, '@BUCKET@', v_bucket::text);
    END LOOP;
    EXECUTE replace($function$
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
    SET enable_tidscan = on
    SET enable_nestloop = on
    SET plan_cache_mode = 'auto'
AS $body$
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
        -- One statement per bucket graph, its bucket a literal, so the planner
        -- proves that graph's partial index applies. Plain PostgreSQL keeps one
        -- generic plan for each (planned per call, the 63 other graphs' partial
        -- indexes cost 0.3 ms); Citus keeps custom plans (see the exact path).
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
        END IF;
        CASE pymem.search_bucket(p_user_hash)
@BUCKET_CASES@
        END CASE;
    ELSIF v_rows > 0 AND v_filtered THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the rows
        -- come from the GIN (or btree) index and the top k are exact. The top k
        -- are chosen among narrow rows (where each one is, its distance) and only
        -- they are read whole: see the header.
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, t.distance, c.ref_cipher
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                       AND n.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]]
                       AND (cardinality(p_ends) = 1 OR pymem.tags_match(n.meta_tags, p_filter, p_ends))
                     ORDER BY (n.embedding OPERATOR(public.<=>) p_query) + 0
                     LIMIT p_k) t
              JOIN pymem.memory_chunks c ON c.ctid = t.tid
             WHERE c.user_hash = p_user_hash
             ORDER BY t.distance;
    ELSIF v_rows > 0 THEN
        -- One generic plan for every tenant, through the tenant's btree: planned
        -- per call (as plpgsql does while a custom plan looks cheaper) it cost
        -- more than a small tenant's scan. Local to this call, like ef_search.
        -- Not with Citus installed: its planner routes this join to the tenant's
        -- shard only with the parameters known, so it keeps custom plans.
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
            PERFORM set_config('enable_seqscan', 'off', true);
        END IF;
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, t.distance, c.ref_cipher
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                     ORDER BY (n.embedding OPERATOR(public.<=>) p_query) + 0
                     LIMIT p_k) t
              JOIN pymem.memory_chunks c ON c.ctid = t.tid
             WHERE c.user_hash = p_user_hash
             ORDER BY t.distance;
    END IF;
END
$body$;
$function$, '@BUCKET_CASES@', v_cases);
END
$generate$;

RESET ROLE;
