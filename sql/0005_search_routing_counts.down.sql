-- pymem 0005 down: back to 0002's bounded-count routing.
-- Load pgvector's library so its hnsw.* settings are known in this session: a
-- non-superuser (the owner) may not name an unknown placeholder setting in a
-- function's SET clause, and a fresh migration session has not loaded it yet.
SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

DROP TRIGGER memory_chunks_key_stats_truncate ON pymem.memory_chunks;
DROP FUNCTION pymem.reset_live_counts();
DROP INDEX pymem.key_stats_tenant;

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
    -- A bounded count: never reads more than v_exact_max + 1 index entries. RLS
    -- applies here too, so without a tenant context it is 0 and nothing is found.
    SELECT count(*) INTO v_rows
      FROM (SELECT 1 FROM pymem.memory_chunks c WHERE c.user_hash = v_tenant LIMIT v_exact_max + 1) s;
    IF v_rows > v_exact_max THEN
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
