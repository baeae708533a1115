-- Reads by id and by page. Like the search, each needs a committed read intent
-- (40_read_intent.sql) and appends a result row naming the ids it returned.
-- Reads return emb_cipher and the plaintext embedding both, so the client can
-- check that the searchable copy still matches its sealed shadow. No read returns an
-- expired row (revision 0022), except an export that asks for them by name (p_rows:
-- re-keying and verification, which must see every row, and the purge, which opens the
-- expired ones to check their sealed expiry before it removes them).

CREATE OR REPLACE FUNCTION pymem.get_chunks_v2(p_user_hash char(64), p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   ref_cipher bytea)
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
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding, c.ref_cipher
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
COMMENT ON FUNCTION pymem.get_chunks_v2(char, uuid, uuid[]) IS
    'The tenant''s chunks among 1 to 10,000 ids, sealed, in id order. Needs a committed read intent '
    '(get_digest); appends a result row with the ids returned.';

-- Keyset paging (p_after: the last id of the previous page).
CREATE OR REPLACE FUNCTION pymem.export_chunks_v2(p_user_hash char(64), p_ticket uuid, p_key_ids integer[],
                                                  p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   ref_cipher bytea)
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
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding, c.ref_cipher
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
COMMENT ON FUNCTION pymem.export_chunks_v2(char, uuid, integer[], uuid, integer) IS
    'A page of up to 10,000 of the tenant''s chunks in id order after p_after, optionally only those under '
    'p_key_ids (listing, re-keying, compliance export). Needs a committed read intent (export_digest, '
    'valid for every page); appends a result row per page.';

-- Revision 0022: each row's timestamps, expired rows left out.
CREATE OR REPLACE FUNCTION pymem.get_chunks_v3(p_user_hash char(64), p_ticket uuid, p_ids uuid[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   ref_cipher bytea, created_at timestamptz, updated_at timestamptz, expires_at timestamptz)
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
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher,
        created_at, updated_at, expires_at IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding, c.ref_cipher, c.created_at, c.updated_at, c.expires_at
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
           AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, '{}')
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'get', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.get_chunks_v3(char, uuid, uuid[]) IS
    'The tenant''s unexpired chunks among 1 to 10,000 ids, sealed, in id order, with their timestamps. Needs a '
    'committed read intent (get_digest); appends a result row with the ids returned.';

-- Keyset paging (p_after: the last id of the previous page), in a time window (see
-- pymem.check_window); p_rows: 'live' (unexpired), 'all', or 'expired' only.
CREATE OR REPLACE FUNCTION pymem.export_chunks_v3(p_user_hash char(64), p_ticket uuid, p_key_ids integer[],
                                                  p_after uuid, p_limit integer, p_window timestamptz[],
                                                  p_rows text)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   ref_cipher bytea, created_at timestamptz, updated_at timestamptz, expires_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 OR p_rows IS NULL OR p_rows NOT IN ('live', 'all', 'expired')
    THEN
        RAISE EXCEPTION 'export_chunks: limit must be between 1 and 10000, and p_rows live, all or expired'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_window(p_window);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'export',
                                     pymem.export_digest_v3(p_key_ids, p_limit, p_window, p_rows));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher,
        created_at, updated_at, expires_at IN
        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
               c.embedding, c.ref_cipher, c.created_at, c.updated_at, c.expires_at
          FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash
           AND (p_key_ids IS NULL OR c.key_id = ANY (p_key_ids))
           AND (p_after IS NULL OR c.id > p_after)
           AND pymem.row_in_window(c.created_at, c.updated_at, CASE WHEN p_rows = 'live' THEN c.expires_at END,
                                   p_window)
           AND (p_rows <> 'expired' OR c.expires_at <= now())
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'export', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.export_chunks_v3(char, uuid, integer[], uuid, integer, timestamptz[], text) IS
    'A page of up to 10,000 of the tenant''s chunks in id order after p_after, with their timestamps: optionally '
    'only those under p_key_ids, in a time window; unexpired (p_rows live), all (re-keying, verification) or '
    'expired only (the purge). Needs a committed read intent (export_digest_v3, valid for every page); appends a '
    'result row per page.';
