-- The first generation of the tenant API, kept for callers written against it.
-- Same checks, same durable-read protocol and same audit rows as the current
-- functions; they only lack the caller id (ref_cipher), blind-index tags and
-- filters. New code calls write_chunks, get_chunks_v2, search_chunks_v2,
-- search_chunks_on_standby_v2, export_chunks_v2 and rekey_chunks_v2.

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
    v_ids uuid[] := '{}';
    v_row record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'put_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'put_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the chain head, then rows, then key_stats.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    PERFORM pymem.check_data_keys(p_user_hash, p_key_ids);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers,
                               p_key_ids, p_embeddings)
                        AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding)
    LOOP
        INSERT INTO pymem.memory_chunks
            (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, embedding, aad_version)
        VALUES (v_row.id, p_user_hash, v_row.doc_id, v_row.source, v_row.text_cipher, v_row.meta_cipher,
                v_row.emb_cipher, v_row.key_id, v_row.embedding, p_aad_version);
        v_ids := v_ids || v_row.id;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, p_key_ids, array_fill(3, ARRAY[v_n]), 1);  -- no caller ids in v1
    PERFORM pymem.warn_key_budget(p_key_ids);
    -- No write records in v1: each row is recorded as written outside that API.
    PERFORM pymem.audit_append(p_user_hash, 'insert', 'write', NULL, pymem.no_write_records(cardinality(v_ids)),
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[],
                                     public.vector[], smallint) IS
    'v1: inserts sealed chunks of the caller''s tenant (no caller ids, no tags); see write_chunks.';

CREATE OR REPLACE FUNCTION pymem.get_chunks(p_user_hash char(64), p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'get_chunks: give between 1 and 10000 ids' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'get', pymem.get_digest(p_ids));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
           AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, '{}')  -- not expired (0022)
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'get', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.get_chunks(char, uuid, uuid[]) IS 'v1: get_chunks_v2 without ref_cipher.';

-- plpgsql, not sql: `pymem distribute` creates functions on the Citus workers in
-- creation order, and an sql body is checked against functions (search_rows_v2,
-- created later) that are not there yet.
CREATE OR REPLACE FUNCTION pymem.search_rows(p_user_hash char(64), p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
        SELECT r.id, r.doc_id, r.source, r.text_cipher, r.meta_cipher, r.emb_cipher, r.key_id, r.aad_version,
               r.embedding, r.distance
          FROM pymem.search_rows_v2(p_user_hash, p_query, p_k, '{}'::bytea[], '{}'::integer[]) r;
END
$$;
COMMENT ON FUNCTION pymem.search_rows(char, public.vector, integer) IS
    'Internal, v1: search_rows_v2 without a filter or ref_cipher.';

CREATE OR REPLACE FUNCTION pymem.search_chunks(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                               p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search', pymem.search_digest(p_query, p_k));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance IN
        SELECT * FROM pymem.search_rows(p_user_hash, p_query, p_k)
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'search', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.search_chunks(char, uuid, public.vector, integer) IS
    'v1: search_chunks_v2 without a filter or ref_cipher; its intent digest is search_digest.';

CREATE OR REPLACE FUNCTION pymem.search_chunks_on_standby(p_user_hash char(64), p_ticket uuid,
                                                          p_query public.vector, p_k integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pymem: search_chunks_on_standby serves hot standbys; on the primary call search_chunks'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search', pymem.search_digest(p_query, p_k));
    RETURN QUERY SELECT * FROM pymem.search_rows(p_user_hash, p_query, p_k);
END
$$;
COMMENT ON FUNCTION pymem.search_chunks_on_standby(char, uuid, public.vector, integer) IS
    'v1: search_chunks_on_standby_v2 without a filter or ref_cipher.';

CREATE OR REPLACE FUNCTION pymem.export_chunks(p_user_hash char(64), p_ticket uuid, p_key_ids integer[],
                                               p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'export', pymem.export_digest(p_key_ids, p_limit));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash
           AND (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
           AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, '{}')  -- not expired (0022)
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'export', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.export_chunks(char, uuid, integer[], uuid, integer) IS
    'v1: export_chunks_v2 without ref_cipher.';

CREATE OR REPLACE FUNCTION pymem.rekey_chunks(p_user_hash char(64), p_ids uuid[], p_read_key_ids integer[],
                                              p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[],
                                              p_new_key_id integer, p_aad_version smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids      uuid[] := '{}';
    v_old_keys integer[] := '{}';
    v_row      record;
    v_id       uuid;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.check_aad_version(p_aad_version);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    PERFORM pymem.check_data_keys(p_user_hash, ARRAY[p_new_key_id]);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers)
                        AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher)
    LOOP
        UPDATE pymem.memory_chunks c
           SET text_cipher = v_row.text_cipher, meta_cipher = v_row.meta_cipher, emb_cipher = v_row.emb_cipher,
               key_id = p_new_key_id, aad_version = p_aad_version
         WHERE c.user_hash = p_user_hash AND c.id = v_row.id AND c.key_id = v_row.read_key_id
        RETURNING c.id INTO v_id;
        IF FOUND THEN
            v_ids := v_ids || v_id;
            v_old_keys := v_old_keys || v_row.read_key_id;
        END IF;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, NULL, -1);
    PERFORM pymem.count_keys(p_user_hash, array_fill(p_new_key_id, ARRAY[cardinality(v_ids)]),
                             array_fill(3, ARRAY[cardinality(v_ids)]), 1);  -- v1 re-seals text, meta, emb
    PERFORM pymem.warn_key_budget(ARRAY[p_new_key_id]);
    PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL, pymem.no_write_records(cardinality(v_ids)),
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.rekey_chunks(char, uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint) IS
    'v1: rekey_chunks_v2 for rows without a sealed caller id.';
