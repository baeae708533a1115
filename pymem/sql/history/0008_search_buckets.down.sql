-- Undo 0008: one HNSW index over all rows again, and the 0006/0007 search bodies
-- (copied from those frozen files).
SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

CREATE OR REPLACE FUNCTION pymem.search_rows(p_user_hash char(64), p_query public.vector, p_k integer)
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
        -- Matches that are a large share of the index are found among pgvector's
        -- default 40 candidates; 100 is for the rest. Local to this call.
        IF v_rows >= 0.1 * pymem.index_rows(p_user_hash) THEN
            PERFORM set_config('hnsw.ef_search', '40', true);
        END IF;
        RETURN QUERY
            WITH hits AS MATERIALIZED (
                SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                       c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance, c.ref_cipher
                  FROM pymem.memory_chunks c
                 WHERE c.user_hash = p_user_hash
                   AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                   AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                 ORDER BY c.embedding OPERATOR(public.<=>) p_query
                 LIMIT p_k)
            SELECT * FROM hits h ORDER BY h.distance;  -- relaxed_order: re-sort the k hits
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

DROP FUNCTION pymem.search_graph_rows(char);
DO $$
BEGIN
    FOR v_bucket IN 0..63 LOOP
        EXECUTE format('DROP INDEX pymem.%I', 'memory_chunks_embedding_hnsw_' || v_bucket);
    END LOOP;
END
$$;
DROP FUNCTION pymem.search_bucket(char);
CREATE INDEX memory_chunks_embedding_hnsw ON pymem.memory_chunks
    USING hnsw (embedding public.vector_cosine_ops);

RESET ROLE;
