-- pymem 0007: caller-chosen ids, upsert, delete and list by id, filters on sealed
-- metadata, and the opened embedding in results. Valid on plain PostgreSQL 16/18
-- and on Citus (run `pymem distribute` again after upgrading a distributed
-- database: it distributes the functions added here).
--
--   * Ids. The database never sees a caller's id that could carry user data. A
--     caller id that is a canonical UUID string is used as the row's id as it is
--     (it is already opaque). Any other string is stored as a keyed hash (a UUID
--     made from HMAC-SHA256 under a per-tenant key the database does not hold), and
--     the string itself is sealed in ref_cipher (AES-256-GCM, AAD v2, field "ref"),
--     so reads return it. Lookups hash the caller's id in the client the same way.
--   * Metadata filters. Each scalar metadata value gets a blind-index tag: 16 bytes
--     of HMAC-SHA256 over the key and the value, under the same per-tenant key.
--     Tags are stored in meta_tags (GIN-indexed); a filter is sent as tags, so
--     the database evaluates equality and membership without learning keys or
--     values. It does learn which of a tenant's rows share a key-value pair.
--   * Writes (write_chunks) insert, or upsert: a row with the same id is replaced
--     in the same transaction, under the tenant's audit-chain lock, so concurrent
--     writers of one tenant never interleave. Reads that return rows (v2) add
--     ref_cipher as their last column; the 0006 functions keep their shapes.

SELECT '[0]'::public.vector;  -- load pgvector so its hnsw.* settings are known (see 0003)

SET LOCAL ROLE pymem_owner;

-- ---------------------------------------------------------------------------
-- Columns, index, tuning.
-- ---------------------------------------------------------------------------
ALTER TABLE pymem.memory_chunks ADD COLUMN ref_cipher bytea;
-- A constant default: no table rewrite.
ALTER TABLE pymem.memory_chunks ADD COLUMN meta_tags bytea[] NOT NULL DEFAULT '{}';
ALTER TABLE pymem.memory_chunks
    ADD CONSTRAINT memory_chunks_meta_tags_check CHECK (cardinality(meta_tags) <= 4096);
-- Tags are keyed per tenant, so a tag names one tenant's rows: the GIN index
-- needs no tenant column to stay selective.
CREATE INDEX memory_chunks_meta_tags_idx ON pymem.memory_chunks USING gin (meta_tags);

-- A filtered search reads every matching row exactly (through the GIN index) up
-- to this many matches, and walks the HNSW index with the filter beyond it.
ALTER TABLE pymem.tuning ADD COLUMN filtered_exact_max_rows integer NOT NULL DEFAULT 5000
    CHECK (filtered_exact_max_rows BETWEEN 0 AND 100000000);


-- ---------------------------------------------------------------------------
-- Filters: a conjunction of clauses, each clause any one of its tags. The tags
-- are flattened into p_filter, and p_ends[i] is the position of clause i's last
-- tag. No clause: no filter.
-- ---------------------------------------------------------------------------
CREATE FUNCTION pymem.check_filter(p_filter bytea[], p_ends integer[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_filter IS NULL OR p_ends IS NULL OR cardinality(p_filter) > 1024 OR cardinality(p_ends) > 64
       OR array_ndims(p_filter) > 1 OR array_ndims(p_ends) > 1
       OR cardinality(p_ends) <> (SELECT count(*) FROM unnest(p_ends) WITH ORDINALITY AS e(pos, n)
                                   WHERE e.pos > coalesce(p_ends[e.n - 1], 0))
       OR coalesce(p_ends[cardinality(p_ends)], 0) <> cardinality(p_filter)
       OR EXISTS (SELECT 1 FROM unnest(p_filter) AS t(tag) WHERE t.tag IS NULL OR octet_length(t.tag) <> 16) THEN
        RAISE EXCEPTION 'pymem: a filter is up to 64 clauses of 16-byte tags, p_ends increasing to their count'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Called once per candidate row, so no SET clause (a function with one saves and
-- restores the setting on every call); every name in it is schema-qualified instead.
-- Callers skip it for a one-clause filter, which the && on that clause decides.
CREATE FUNCTION pymem.tags_match(p_tags bytea[], p_filter bytea[], p_ends integer[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    RETURN coalesce((SELECT pg_catalog.bool_and(
                                p_tags OPERATOR(pg_catalog.&&) p_filter[coalesce(p_ends[i - 1], 0) + 1:p_ends[i]])
                       FROM pg_catalog.generate_subscripts(p_ends, 1) AS i), true);

CREATE FUNCTION pymem.filtered_search_digest(p_query public.vector, p_k integer, p_filter bytea[],
                                             p_ends integer[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(public.vector_send(p_query) || int4send(p_k)
                  || convert_to(coalesce(p_ends::text, '-'), 'UTF8') || sha256(array_send(p_filter)));


-- ---------------------------------------------------------------------------
-- Writes.
-- ---------------------------------------------------------------------------
-- p_tags: each row's tags concatenated (16 bytes each). p_upsert: replace a row
-- of the same id (audited as an update) instead of failing on it.
CREATE FUNCTION pymem.write_chunks(
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

-- Delete the tenant's rows among p_ids; the rest are ignored. Audited, also when
-- nothing matched.
CREATE FUNCTION pymem.delete_chunk_ids(p_user_hash char(64), p_ids uuid[]) RETURNS integer
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
    PERFORM pymem.count_keys(p_user_hash, v_keys, -1);
    PERFORM pymem.audit_append(p_user_hash, 'delete', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;

-- Re-keying (as rekey_chunks in 0006), with the sealed caller id re-sealed too.
CREATE FUNCTION pymem.rekey_chunks_v2(p_user_hash char(64), p_ids uuid[], p_read_key_ids integer[],
                                      p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[],
                                      p_ref_ciphers bytea[], p_new_key_id integer, p_aad_version smallint)
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
    IF cardinality(p_ref_ciphers) IS DISTINCT FROM cardinality(p_ids) THEN
        RAISE EXCEPTION 'rekey_chunks_v2: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_lock_chain(p_user_hash);
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
        END IF;
    END LOOP;
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, -1);
    PERFORM pymem.count_keys(p_user_hash, array_fill(p_new_key_id, ARRAY[cardinality(v_ids)]), 1);
    PERFORM pymem.warn_key_budget(ARRAY[p_new_key_id]);
    PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$$;


-- ---------------------------------------------------------------------------
-- Reads, v2: the 0006 row with ref_cipher last.
-- ---------------------------------------------------------------------------
CREATE FUNCTION pymem.get_chunks_v2(p_user_hash char(64), p_ticket uuid, p_ids uuid[])
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
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'get', 'result', p_ticket, NULL, v_ids);
END
$$;

-- The tenant's chunks in id order after p_after (keyset paging), optionally only
-- those under p_key_ids: listing, re-keying and compliance export.
CREATE FUNCTION pymem.export_chunks_v2(p_user_hash char(64), p_ticket uuid, p_key_ids integer[], p_after uuid,
                                       p_limit integer)
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
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'export', 'result', p_ticket, NULL, v_ids);
END
$$;

-- The search of 0006 (search_rows) with an optional filter. The path depends on
-- how many rows can match: the tenant's live rows without a filter, or the
-- filter's matches, counted through the GIN index up to the exact limit.
-- Few: exact search over them. Many: the HNSW index, walked with the filter
-- (iterative scan), which finds k matches among enough candidates when the
-- matches are that many.
CREATE FUNCTION pymem.search_rows_v2(p_user_hash char(64), p_query public.vector, p_k integer,
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

CREATE FUNCTION pymem.search_chunks_v2(p_user_hash char(64), p_ticket uuid, p_query public.vector, p_k integer,
                                       p_filter bytea[], p_ends integer[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.filtered_search_digest(p_query, p_k, p_filter, p_ends));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance,
        ref_cipher IN
        SELECT * FROM pymem.search_rows_v2(p_user_hash, p_query, p_k, p_filter, p_ends)
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'search', 'result', p_ticket, NULL, v_ids);
END
$$;

-- As search_chunks_on_standby (0006): the result row goes to the primary through
-- pymem.read_result.
CREATE FUNCTION pymem.search_chunks_on_standby_v2(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                                  p_k integer, p_filter bytea[], p_ends integer[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea)
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
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.filtered_search_digest(p_query, p_k, p_filter, p_ends));
    RETURN QUERY SELECT * FROM pymem.search_rows_v2(p_user_hash, p_query, p_k, p_filter, p_ends);
END
$$;


-- ---------------------------------------------------------------------------
-- Grants.
-- ---------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pymem.filtered_search_digest(public.vector, integer, bytea[], integer[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION
    pymem.export_chunks_v2(char, uuid, integer[], uuid, integer)
    TO pymem_app, pymem_maintainer;
GRANT EXECUTE ON FUNCTION
    pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                       integer[], public.vector[], smallint),
    pymem.delete_chunk_ids(char, uuid[]),
    pymem.get_chunks_v2(char, uuid, uuid[]),
    pymem.search_chunks_v2(char, uuid, public.vector, integer, bytea[], integer[]),
    pymem.search_chunks_on_standby_v2(char, uuid, public.vector, integer, bytea[], integer[])
    TO pymem_app;
GRANT EXECUTE ON FUNCTION
    pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer, smallint)
    TO pymem_maintainer;

RESET ROLE;
