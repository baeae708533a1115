-- Undo 0013: write_chunks as 0007 created it (copied from that frozen file).
SET LOCAL ROLE pymem_owner;

CREATE OR REPLACE FUNCTION pymem.write_chunks(
    p_user_hash    char(64),
    p_upsert       boolean,
    p_ids          uuid[],
    p_doc_ids      text[],
    p_sources      text[],
    p_text_ciphers bytea[],
    p_meta_ciphers bytea[],
    p_emb_ciphers  bytea[],
    p_ref_ciphers  bytea[],
    p_tags         bytea[],
    p_key_ids      integer[],
    p_embeddings   public.vector[],
    p_aad_version  smallint)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_n        integer := cardinality(p_ids);
    v_new      uuid[] := '{}';
    v_replaced uuid[] := '{}';
    v_old_keys integer[] := '{}';
    v_old_key  integer;
    v_tags     bytea[];
    v_row      record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_upsert IS NULL OR v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'write_chunks: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_ref_ciphers) <> v_n OR cardinality(p_tags) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n THEN
        RAISE EXCEPTION 'write_chunks: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_tags) AS t(tags) WHERE t.tags IS NULL OR octet_length(t.tags) % 16 <> 0) THEN
        RAISE EXCEPTION 'write_chunks: tags are 16 bytes each' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(DISTINCT i) FROM unnest(p_ids) AS i) <> v_n THEN
        RAISE EXCEPTION 'write_chunks: an id appears twice in one call' USING ERRCODE = 'unique_violation';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the chain head, then rows, then key_stats. The head lock also
    -- serialises this tenant's writers, so a replaced row cannot be re-inserted
    -- by another call between the DELETE and the INSERT below.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers,
                               p_ref_ciphers, p_tags, p_key_ids, p_embeddings)
                        AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, tags, key_id,
                             embedding)
    LOOP
        IF p_upsert THEN
            DELETE FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = v_row.id
            RETURNING c.key_id INTO v_old_key;
            IF FOUND THEN
                v_replaced := v_replaced || v_row.id;
                v_old_keys := v_old_keys || v_old_key;
            END IF;
        END IF;
        -- Split apart first: Citus refuses a subquery inside an INSERT.
        v_tags := ARRAY(SELECT substring(v_row.tags FROM o FOR 16)
                          FROM generate_series(1, octet_length(v_row.tags), 16) AS o);
        INSERT INTO pymem.memory_chunks
            (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, meta_tags, key_id,
             embedding, aad_version)
        VALUES (v_row.id, p_user_hash, v_row.doc_id, v_row.source, v_row.text_cipher, v_row.meta_cipher,
                v_row.emb_cipher, v_row.ref_cipher, v_tags, v_row.key_id, v_row.embedding, p_aad_version);
        IF NOT v_row.id = ANY (v_replaced) THEN
            v_new := v_new || v_row.id;
        END IF;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, -1);
    PERFORM pymem.count_keys(p_user_hash, p_key_ids, 1);
    PERFORM pymem.warn_key_budget(p_key_ids);
    IF cardinality(v_new) > 0 THEN
        PERFORM pymem.audit_append(p_user_hash, 'insert', 'write', NULL, NULL,
                                   ARRAY(SELECT i FROM unnest(v_new) AS i ORDER BY i));
    END IF;
    IF cardinality(v_replaced) > 0 THEN
        PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL, NULL,
                                   ARRAY(SELECT i FROM unnest(v_replaced) AS i ORDER BY i));
    END IF;
    RETURN v_n;
END
$$;

RESET ROLE;
