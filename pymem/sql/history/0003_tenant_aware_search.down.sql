-- pymem 0003 down: back to 0001's single-path search (HNSW or whatever the planner picks).
SET LOCAL ROLE pymem_owner;

CREATE OR REPLACE FUNCTION pymem.search_chunks(p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   key_id integer, distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR id, doc_id, source, text_cipher, meta_cipher, key_id, distance IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.key_id,
               c.embedding OPERATOR(public.<=>) p_query
          FROM pymem.memory_chunks c
         ORDER BY c.embedding OPERATOR(public.<=>) p_query
         LIMIT p_k
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append('search', pymem.current_tenant(), v_ids);
END
$$;

RESET ROLE;
