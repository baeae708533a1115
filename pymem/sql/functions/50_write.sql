-- Writes: insert or upsert, delete by ids, by document or the whole tenant, and
-- re-keying. Each call checks its tenant argument against the context, takes the
-- tenant's chain head first (one lock order everywhere: chain head, rows,
-- key_stats), keeps key_stats, and appends its audit rows, also when nothing
-- matched. Every statement names user_hash, so on Citus a call reads and writes
-- exactly one shard group.

-- Write records (revision 0016): 32 bytes each, one per row written. A NULL
-- array or element, or another length, is refused.
CREATE OR REPLACE FUNCTION pymem.check_write_records(p_records bytea[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_records IS NULL OR array_ndims(p_records) > 1
       OR EXISTS (SELECT 1 FROM unnest(p_records) AS r(rec) WHERE r.rec IS NULL OR octet_length(r.rec) <> 32) THEN
        RAISE EXCEPTION 'pymem: each row written needs its 32-byte write record'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_write_records(bytea[]) IS
    'Raises invalid_parameter_value unless every write record is 32 bytes.';

-- The records of n rows written outside the write-record API (direct DML, the v1
-- functions): 32 zero bytes each, which no row matches, so a verifier reports them.
CREATE OR REPLACE FUNCTION pymem.no_write_records(p_rows integer) RETURNS bytea
    LANGUAGE sql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN decode(repeat('00', 32 * p_rows), 'hex');
COMMENT ON FUNCTION pymem.no_write_records(integer) IS
    'The write records of rows written outside the write-record API: 32 zero bytes each.';

-- The params_digest of a write's audit row: the records of the rows in p_which,
-- concatenated in id order (the order of the row's chunk_ids). p_ids and
-- p_records are parallel; an id is there once.
CREATE OR REPLACE FUNCTION pymem.write_records_of(p_ids uuid[], p_records bytea[], p_which uuid[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT string_agg(u.rec, '\x'::bytea ORDER BY u.id)
              FROM unnest(p_ids, p_records) AS u(id, rec)
              JOIN unnest(p_which) AS w(id) ON w.id = u.id);  -- a join: = ANY would be rows x ids
COMMENT ON FUNCTION pymem.write_records_of(uuid[], bytea[], uuid[]) IS
    'The write records of the rows among p_which, concatenated in id order: a write''s audited params_digest.';

-- Keyword terms (revision 0021): a row's postings in memory_terms, sent as one bytea
-- per row, its distinct terms' 16-byte keyed tags concatenated (pymem.terms), at most
-- 4,096 of them.
CREATE OR REPLACE FUNCTION pymem.check_row_terms(p_terms bytea[], p_rows integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(p_terms) IS DISTINCT FROM p_rows OR array_ndims(p_terms) > 1
       OR EXISTS (SELECT 1 FROM unnest(p_terms) AS t(terms)
                   WHERE t.terms IS NULL OR octet_length(t.terms) % 16 <> 0 OR octet_length(t.terms) > 16 * 4096) THEN
        RAISE EXCEPTION 'pymem: each row''s terms are up to 4096 tags of 16 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_row_terms(bytea[], integer) IS
    'Raises invalid_parameter_value unless there are p_rows term lists of up to 4096 16-byte tags.';

-- Replaces the postings of rows p_ids (parallel to p_terms) with p_terms'. Internal:
-- for the definer functions that checked the tenant and hold its chain head. A tag
-- twice in one row violates memory_terms' primary key.
CREATE OR REPLACE FUNCTION pymem.put_terms(p_user_hash char(64), p_ids uuid[], p_terms bytea[]) RETURNS void
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pymem.memory_terms t WHERE t.user_hash = p_user_hash AND t.chunk_id = ANY (p_ids);
    INSERT INTO pymem.memory_terms (user_hash, term, chunk_id)
    SELECT p_user_hash, substring(u.terms FROM o FOR 16), u.id
      FROM unnest(p_ids, p_terms) AS u(id, terms), generate_series(1, octet_length(u.terms), 16) AS o;
END
$$;
COMMENT ON FUNCTION pymem.put_terms(char, uuid[], bytea[]) IS
    'Internal: replaces the keyword postings of the tenant''s rows p_ids with p_terms''.';

-- p_tags: each row's blind-index tags concatenated (16 bytes each). p_terms (0021):
-- each row's keyword postings (see check_row_terms). p_expected (0021): an update
-- (see below). p_upsert:
-- replace a row of the same id (audited as an update) instead of failing on it.
-- p_records: each row's write record (32 bytes), a MAC the client computes under
-- the tenant's key over what it writes (pymem.freshness). The audit rows carry
-- them as params_digest, in the order of their chunk_ids, so a verifier holding the
-- keys can tell a live row from an older copy of it, or from a row an audited
-- delete removed (revision 0016). The database cannot check a record.
-- One INSERT ... SELECT for the whole call: an INSERT per row opened the table's
-- indexes and prepared the 64 bucket graphs' predicates once per row.
CREATE OR REPLACE FUNCTION pymem.write_chunks_v3(
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
    p_aad_version  smallint,
    p_records      bytea[],
    p_terms        bytea[],
    p_expected     bytea[],
    p_read_records bytea[],
    p_expires_at   timestamptz[])
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
    v_created  timestamptz[] := '{}';
    v_row      record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_upsert IS NULL OR v_n IS NULL OR v_n = 0 THEN
        RAISE EXCEPTION 'write_chunks_v3: no chunks given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_expected IS NOT NULL AND (NOT p_upsert OR cardinality(p_expected) <> v_n OR array_ndims(p_expected) > 1
       OR EXISTS (SELECT 1 FROM unnest(p_expected) AS e(d) WHERE e.d IS NULL OR octet_length(e.d) <> 32)
       OR cardinality(p_read_records) IS DISTINCT FROM v_n) THEN
        RAISE EXCEPTION 'write_chunks_v3: an update gives each row''s 32-byte digest and write record as read,'
                        ' with p_upsert' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_expected IS NOT NULL THEN
        PERFORM pymem.check_write_records(p_read_records);
    END IF;
    IF cardinality(p_doc_ids) <> v_n OR cardinality(p_sources) <> v_n OR cardinality(p_text_ciphers) <> v_n
       OR cardinality(p_meta_ciphers) <> v_n OR cardinality(p_emb_ciphers) <> v_n
       OR cardinality(p_ref_ciphers) <> v_n OR cardinality(p_tags) <> v_n
       OR cardinality(p_key_ids) <> v_n OR cardinality(p_embeddings) <> v_n
       OR cardinality(p_records) IS DISTINCT FROM v_n
       OR (p_expires_at IS NOT NULL AND (cardinality(p_expires_at) <> v_n OR array_ndims(p_expires_at) > 1)) THEN
        RAISE EXCEPTION 'write_chunks_v3: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_tags) AS t(tags) WHERE t.tags IS NULL OR octet_length(t.tags) % 16 <> 0) THEN
        RAISE EXCEPTION 'write_chunks_v3: tags are 16 bytes each' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_write_records(p_records);
    -- An expiry is in the future (a row written already expired is more likely a clock or
    -- unit mistake), before 9999-12-30 (read back in any time zone, it is before year 10000),
    -- and bound by the row's AAD (version 3).
    IF EXISTS (SELECT 1 FROM unnest(p_expires_at) AS e(at)
                WHERE e.at <= now() OR e.at > '9999-12-30 00:00:00+00'::timestamptz
                   OR (e.at IS NOT NULL AND p_aad_version IS DISTINCT FROM 3)) THEN
        RAISE EXCEPTION 'write_chunks_v3: an expiry must be in the future, before 9999-12-30, and sealed with AAD v3'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_terms IS NOT NULL THEN
        PERFORM pymem.check_row_terms(p_terms, v_n);
    END IF;
    IF (SELECT count(DISTINCT i) FROM unnest(p_ids) AS i) <> v_n THEN
        RAISE EXCEPTION 'write_chunks_v3: an id appears twice in one call' USING ERRCODE = 'unique_violation';
    END IF;
    PERFORM pymem.check_aad_version(p_aad_version);
    -- Lock order: the chain head, then rows, then key_stats. The head lock also
    -- serialises this tenant's writers, so a replaced row cannot be re-inserted
    -- by another call between the DELETE and the INSERT below.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    PERFORM pymem.check_data_keys(p_user_hash, p_key_ids);
    -- An update (revision 0021): every row is there, as the client read it (the digest
    -- of its ciphertexts, which every write and re-key seals anew), or nothing is written.
    -- The head lock keeps it so until the rows are replaced.
    IF p_expected IS NOT NULL AND (SELECT count(*) FROM pymem.memory_chunks c
                                     JOIN unnest(p_ids, p_expected) AS u(id, digest) ON u.id = c.id
                                    WHERE c.user_hash = p_user_hash
                                      AND pymem.chunk_digest(c.text_cipher, c.meta_cipher, c.emb_cipher) = u.digest)
                                  <> v_n THEN
        RAISE EXCEPTION 'pymem: a chunk of this update changed or went away since it was read; nothing was written'
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF p_upsert THEN
        FOR v_row IN
            DELETE FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
            RETURNING c.id, c.key_id, c.created_at, c.expires_at
        LOOP
            v_replaced := v_replaced || v_row.id;
            v_old_keys := v_old_keys || v_row.key_id;
            -- An expired row (not purged yet) is replaced by a new one, created now.
            v_created := v_created || CASE WHEN v_row.expires_at <= now() THEN now() ELSE v_row.created_at END;
        END LOOP;
    END IF;
    -- A replaced row keeps when it was created, and records when it was updated (0021).
    INSERT INTO pymem.memory_chunks
        (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, meta_tags, key_id,
         embedding, aad_version, created_at, updated_at, expires_at)
    SELECT u.id, p_user_hash, u.doc_id, u.source, u.text_cipher, u.meta_cipher, u.emb_cipher, u.ref_cipher,
           ARRAY(SELECT substring(u.tags FROM o FOR 16) FROM generate_series(1, octet_length(u.tags), 16) AS o),
           u.key_id, u.embedding, p_aad_version, coalesce(r.created_at, now()),
           CASE WHEN r.id IS NOT NULL THEN now() END, u.expires_at
      FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_ref_ciphers,
                  p_tags, p_key_ids, p_embeddings, p_expires_at)
           AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, tags, key_id, embedding,
                expires_at)
      LEFT JOIN unnest(v_replaced, v_created) AS r(id, created_at) ON r.id = u.id;
    -- Postings of a replaced row go with it; a row written without terms has none.
    PERFORM pymem.put_terms(p_user_hash, p_ids,
                            coalesce(p_terms, array_fill(''::bytea, ARRAY[v_n])));
    v_new := ARRAY(SELECT i FROM unnest(p_ids) AS i WHERE NOT i = ANY (v_replaced));
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, NULL, -1);
    PERFORM pymem.count_keys(p_user_hash, p_key_ids, ARRAY(SELECT pymem.seals_of(r) FROM unnest(p_ref_ciphers) AS r),
                             1);
    PERFORM pymem.warn_key_budget(p_key_ids);
    IF cardinality(v_new) > 0 THEN
        PERFORM pymem.audit_append(p_user_hash, 'insert', 'write', NULL,
                                   pymem.write_records_of(p_ids, p_records, v_new),
                                   ARRAY(SELECT i FROM unnest(v_new) AS i ORDER BY i));
    END IF;
    -- An update names the write records of the rows it read (0021): a verifier holding the
    -- keys (pymem verify-rows) reports one that read a row its latest audited write did not
    -- leave (an older copy put back), which the update would otherwise make current.
    IF p_expected IS NOT NULL THEN
        PERFORM pymem.audit_append(p_user_hash, 'update_from', 'write', NULL,
                                   pymem.write_records_of(p_ids, p_read_records, v_replaced),
                                   ARRAY(SELECT i FROM unnest(v_replaced) AS i ORDER BY i));
    END IF;
    IF cardinality(v_replaced) > 0 THEN
        PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL,
                                   pymem.write_records_of(p_ids, p_records, v_replaced),
                                   ARRAY(SELECT i FROM unnest(v_replaced) AS i ORDER BY i));
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION pymem.write_chunks_v3(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[],
                                          bytea[], bytea[], integer[], public.vector[], smallint, bytea[], bytea[],
                                          bytea[], bytea[], timestamptz[]) IS
    'Inserts (or, with p_upsert, replaces) sealed chunks of the caller''s tenant, with their keyword terms '
    '(p_terms NULL: none) and expiries (p_expires_at NULL, or an element NULL: none); with p_expected, replaces '
    'only rows still as read (all or none), and audits the records of the rows read (update_from). Audits an '
    'insert row and an update row with the ids, sorted, and their write records. Returns the number of chunks '
    'written.';

-- Revision 0021's signature, for apps that set no expiry.
CREATE OR REPLACE FUNCTION pymem.write_chunks_v2(
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
    p_aad_version  smallint,
    p_records      bytea[],
    p_terms        bytea[],
    p_expected     bytea[],
    p_read_records bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    -- plpgsql: a SQL-standard body would make write_chunks_v3 undroppable by a downgrade.
    RETURN pymem.write_chunks_v3(p_user_hash, p_upsert, p_ids, p_doc_ids, p_sources, p_text_ciphers,
                                 p_meta_ciphers, p_emb_ciphers, p_ref_ciphers, p_tags, p_key_ids, p_embeddings,
                                 p_aad_version, p_records, p_terms, p_expected, p_read_records, NULL);
END
$$;
COMMENT ON FUNCTION pymem.write_chunks_v2(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[],
                                          bytea[], bytea[], integer[], public.vector[], smallint, bytea[], bytea[],
                                          bytea[], bytea[]) IS
    'write_chunks_v3 without expiries (revision 0021''s signature).';

-- The digest an update names a row by, as read (pymem.update_memory_chunks): its ciphertexts.
CREATE OR REPLACE FUNCTION pymem.chunk_digest(p_text_cipher bytea, p_meta_cipher bytea, p_emb_cipher bytea)
    RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(int4send(octet_length(p_text_cipher)) || p_text_cipher || int4send(octet_length(p_meta_cipher))
                  || p_meta_cipher || p_emb_cipher);
COMMENT ON FUNCTION pymem.chunk_digest(bytea, bytea, bytea) IS
    'sha256 of a row''s text, metadata and embedding ciphertexts, length-prefixed: what an update names it by.';

-- Revision 0016's signature, for apps that send no terms (their rows are found by
-- vector search only, until re-written or back-filled: pymem index-terms).
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
    p_aad_version  smallint,
    p_records      bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    -- plpgsql: a SQL-standard body would make write_chunks_v3 undroppable by a downgrade.
    RETURN pymem.write_chunks_v3(p_user_hash, p_upsert, p_ids, p_doc_ids, p_sources, p_text_ciphers,
                                 p_meta_ciphers, p_emb_ciphers, p_ref_ciphers, p_tags, p_key_ids, p_embeddings,
                                 p_aad_version, p_records, NULL, NULL, NULL, NULL);
END
$$;
COMMENT ON FUNCTION pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[],
                                       bytea[], bytea[], integer[], public.vector[], smallint, bytea[]) IS
    'write_chunks_v2 without keyword terms (revision 0016''s signature).';

CREATE OR REPLACE FUNCTION pymem.delete_chunk_ids(p_user_hash char(64), p_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids  uuid[] := '{}';
    v_keys integer[] := '{}';
    v_row  record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'delete_chunk_ids: give between 1 and 10000 ids' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        DELETE FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
        RETURNING c.id, c.key_id
    LOOP
        v_ids := v_ids || v_row.id;
        v_keys := v_keys || v_row.key_id;
    END LOOP;
    DELETE FROM pymem.memory_terms t WHERE t.user_hash = p_user_hash AND t.chunk_id = ANY (v_ids);
    PERFORM pymem.count_keys(p_user_hash, v_keys, NULL, -1);
    PERFORM pymem.audit_append(p_user_hash, 'delete', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.delete_chunk_ids(char, uuid[]) IS
    'Deletes the tenant''s rows among 1 to 10,000 ids (the rest are ignored); audited, also when nothing '
    'matched. Returns the number deleted.';

-- Expiry (revision 0022): no read returns a row whose expires_at has passed. The client
-- removes them: it reads them (export_chunks_v3, 'expired'), opens each, whose AAD binds its
-- expiry, and names here the ones whose sealed expiry has passed, each by its digest as read
-- (pymem.chunk_digest) and its write record as read. A row is deleted, with its postings,
-- only if it is still as read and expired by the database's clock too: whoever writes the
-- table cannot get a row purged by giving it a past expires_at. Audited as 'purge' with the
-- ids removed and their records as read, which pymem verify-rows checks against each row's
-- latest audited write (an older copy put back, its sealed expiry passed, is reported).
CREATE OR REPLACE FUNCTION pymem.purge_expired(p_user_hash char(64), p_ids uuid[], p_digests bytea[],
                                               p_records bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids  uuid[] := '{}';
    v_keys integer[] := '{}';
    v_row  record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000
       OR cardinality(p_digests) IS DISTINCT FROM cardinality(p_ids)
       OR cardinality(p_records) IS DISTINCT FROM cardinality(p_ids)
       OR (SELECT count(DISTINCT i) FROM unnest(p_ids) AS i) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'purge_expired: give 1 to 10000 distinct ids, each with its digest and write record as read'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_write_records(p_records);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        DELETE FROM pymem.memory_chunks c
         USING unnest(p_ids, p_digests) AS u(id, digest)
         WHERE c.user_hash = p_user_hash AND c.id = u.id AND c.expires_at <= now()
           AND pymem.chunk_digest(c.text_cipher, c.meta_cipher, c.emb_cipher) = u.digest
        RETURNING c.id, c.key_id
    LOOP
        v_ids := v_ids || v_row.id;
        v_keys := v_keys || v_row.key_id;
    END LOOP;
    DELETE FROM pymem.memory_terms t WHERE t.user_hash = p_user_hash AND t.chunk_id = ANY (v_ids);
    PERFORM pymem.count_keys(p_user_hash, v_keys, NULL, -1);
    PERFORM pymem.audit_append(p_user_hash, 'purge', 'write', NULL, pymem.write_records_of(p_ids, p_records, v_ids),
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.purge_expired(char, uuid[], bytea[], bytea[]) IS
    'Deletes the tenant''s rows among p_ids that are still as read (p_digests: pymem.chunk_digest) and expired, '
    'with their postings; audited as purge with the ids and their write records as read. Returns the number '
    'deleted.';

-- p_doc_id NULL: every chunk of the tenant.
CREATE OR REPLACE FUNCTION pymem.delete_chunks(p_user_hash char(64), p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids  uuid[] := '{}';
    v_keys integer[] := '{}';
    v_row  record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        DELETE FROM pymem.memory_chunks c
         WHERE c.user_hash = p_user_hash AND (p_doc_id IS NULL OR c.doc_id = p_doc_id)
        RETURNING c.id, c.key_id
    LOOP
        v_ids := v_ids || v_row.id;
        v_keys := v_keys || v_row.key_id;
    END LOOP;
    DELETE FROM pymem.memory_terms t WHERE t.user_hash = p_user_hash AND t.chunk_id = ANY (v_ids);
    PERFORM pymem.count_keys(p_user_hash, v_keys, NULL, -1);
    PERFORM pymem.audit_append(p_user_hash, 'delete', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.delete_chunks(char, text) IS
    'Deletes the tenant''s chunks of one document, or all of them (NULL): the body of delete_document and '
    'erase_tenant.';

CREATE OR REPLACE FUNCTION pymem.delete_document(p_user_hash char(64), p_doc_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF p_doc_id IS NULL THEN
        RAISE EXCEPTION 'delete_document: doc id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pymem.delete_chunks(p_user_hash, p_doc_id);
END
$$;
COMMENT ON FUNCTION pymem.delete_document(char, text) IS
    'Deletes the tenant''s chunks of one document; audited, also when nothing matched. Returns the number deleted.';

CREATE OR REPLACE FUNCTION pymem.erase_tenant(p_user_hash char(64)) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_count integer := pymem.delete_chunks(p_user_hash, NULL);
BEGIN
    -- In the same transaction: a copy of the rows taken before (a dump, a backup)
    -- and put back afterwards finds no key to open under (0019).
    PERFORM pymem.destroy_data_keys(p_user_hash);
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION pymem.erase_tenant(char) IS
    'Deletes every chunk of the tenant and destroys its data keys (its audit chain stays); returns the number '
    'of chunks deleted.';

-- A row is only touched while it is still under the key it was read with, so a
-- re-run or a concurrent rotator never re-seals twice.
CREATE OR REPLACE FUNCTION pymem.rekey_chunks_v2(p_user_hash char(64), p_ids uuid[], p_read_key_ids integer[],
                                                 p_text_ciphers bytea[], p_meta_ciphers bytea[],
                                                 p_emb_ciphers bytea[], p_ref_ciphers bytea[],
                                                 p_new_key_id integer, p_aad_version smallint,
                                                 p_records bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids      uuid[] := '{}';
    v_old_keys integer[] := '{}';
    v_seals    integer[] := '{}';
    v_row      record;
    v_id       uuid;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.check_aad_version(p_aad_version);
    IF cardinality(p_ref_ciphers) IS DISTINCT FROM cardinality(p_ids)
       OR cardinality(p_records) IS DISTINCT FROM cardinality(p_ids) THEN
        RAISE EXCEPTION 'rekey_chunks_v2: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_write_records(p_records);
    IF (SELECT count(DISTINCT i) FROM unnest(p_ids) AS i) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'rekey_chunks_v2: an id appears twice in one call' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_lock_chain(p_user_hash);
    PERFORM pymem.check_data_keys(p_user_hash, ARRAY[p_new_key_id]);
    FOR v_row IN
        SELECT u.* FROM unnest(p_ids, p_read_key_ids, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_ref_ciphers)
                        AS u(id, read_key_id, text_cipher, meta_cipher, emb_cipher, ref_cipher)
    LOOP
        UPDATE pymem.memory_chunks c
           SET text_cipher = v_row.text_cipher, meta_cipher = v_row.meta_cipher, emb_cipher = v_row.emb_cipher,
               ref_cipher = v_row.ref_cipher, key_id = p_new_key_id, aad_version = p_aad_version
         WHERE c.user_hash = p_user_hash AND c.id = v_row.id AND c.key_id = v_row.read_key_id
        RETURNING c.id INTO v_id;
        IF FOUND THEN
            v_ids := v_ids || v_id;
            v_old_keys := v_old_keys || v_row.read_key_id;
            v_seals := v_seals || pymem.seals_of(v_row.ref_cipher);
        END IF;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, NULL, -1);
    PERFORM pymem.count_keys(p_user_hash, array_fill(p_new_key_id, ARRAY[cardinality(v_ids)]), v_seals, 1);
    PERFORM pymem.warn_key_budget(ARRAY[p_new_key_id]);
    PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL,
                               pymem.write_records_of(p_ids, p_records, v_ids),
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer,
                                          smallint, bytea[]) IS
    'Replaces the tenant''s ciphertexts (text, metadata, embedding, caller id) with ones re-sealed under '
    'p_new_key_id, for rows still under the key they were read with (pymem rotate-key). Returns how many.';
