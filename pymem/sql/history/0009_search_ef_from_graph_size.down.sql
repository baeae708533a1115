-- Undo 0009: search_rows_v2 as 0008 created it (copied from that frozen file).
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
    v_share     double precision;
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
    IF v_rows > v_exact_max THEN
        -- A filtered scan sees about k / share candidates before it has k matches;
        -- ef_search covers 8x that (measured at 1M rows with shared topics: 2x gave
        -- recall@10 0.969, 4x 0.976, 8x 0.995 for tenants of 3k-10k rows), at
        -- least 100 (at 40, pgvector's default, whole queries of large tenants
        -- came back empty-handed) and at most 1000. The filtered count stops at
        -- v_exact_max + 1, a lower bound: the estimate errs towards a wider search.
        -- Local to this call.
        v_share := least(1.0, v_rows / pymem.search_graph_rows(p_user_hash));
        PERFORM set_config('hnsw.ef_search', least(1000, greatest(100, ceil(8 * p_k / v_share)))::integer::text,
                           true);
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

RESET ROLE;
