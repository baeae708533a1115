-- Hybrid search (revision 0021): keyword relevance and vector similarity together, for
-- the tenant only, over sealed text. The app turns the query's text into up to 64 term
-- tags (pymem.terms: normalised, stemmed, HMAC'd under the tenant's blind-index key);
-- the database scores the tenant's rows that hold them from their postings
-- (memory_terms, written with the rows) and fuses that ranking with the vector search's
-- (search_rows_v3) by reciprocal rank. It never sees a term, only which of the tenant's
-- rows share one, and which tags a query asks for.

CREATE OR REPLACE FUNCTION pymem.check_terms(p_terms bytea[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(p_terms) IS NULL OR cardinality(p_terms) NOT BETWEEN 1 AND 64 OR array_ndims(p_terms) > 1
       OR EXISTS (SELECT 1 FROM unnest(p_terms) AS t(term) WHERE t.term IS NULL OR octet_length(t.term) <> 16)
       OR (SELECT count(DISTINCT t.term) FROM unnest(p_terms) AS t(term)) <> cardinality(p_terms) THEN
        RAISE EXCEPTION 'pymem: a hybrid search takes 1 to 64 distinct 16-byte term tags'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_terms(bytea[]) IS
    'Raises invalid_parameter_value unless the query terms are 1 to 64 distinct 16-byte tags.';

CREATE OR REPLACE FUNCTION pymem.hybrid_search_digest(p_query public.vector, p_k integer, p_filter bytea[],
                                                      p_ends integer[], p_terms bytea[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to('hybrid', 'UTF8') || pymem.filtered_search_digest(p_query, p_k, p_filter, p_ends)
                  || sha256(array_send(p_terms)));
COMMENT ON FUNCTION pymem.hybrid_search_digest(public.vector, integer, bytea[], integer[], bytea[]) IS
    'The read-intent digest of a search_hybrid_chunks call: query, k, filter, and the term tags.';

-- pymem.keyword_hits: the tenant's p_k best rows by keyword relevance over the query's
-- terms, among the rows that meet the filter, each with the positions (1-based, in
-- p_terms) of the terms it holds, which the client checks against the opened text.
--
-- * The score is BM25's for terms held once in rows of average length: the sum of the
--   idf of the query terms a row holds, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), N the
--   tenant's live rows (key_stats), df the term's postings. The postings say only that a
--   row holds a term (see memory_terms): counts and lengths would make every row a
--   profile a known text is found by.
-- * A term in more than half the tenant's rows, or in more than 500, is left out: the
--   first says little about which row is meant (a name in every memory of its user), and
--   reading the postings of the second would cost more than the whole search, for a
--   weight that cannot make a row count (only rare terms do, below); the vector side still
--   sees the words. So are the commonest of the rest once the postings read would pass
--   5,000 (64 x 501 index entries are counted).
-- * A row counts only if it holds at least half the idf of the query's rare terms (those
--   with an idf of at least 0.8 of a term in one row: in 1,000 rows, a term in at most
--   5). Keyword search is for what embeddings blur, ids, names and codes, which are rare;
--   a row sharing a common word or two with a paraphrase (a cluster of "roof repairs"
--   notes for "the flooding repairs"), or one of its several rarer words ("awake",
--   "keep", "door"), would otherwise outrank the vector search's answer on both lists.
--   (Half the idf of all the query's terms lost a reworded query's answer whenever the
--   question's own words, "what do I need to know about", outweighed the name.)
-- N, df and so the ranking are the database's to state: whoever can write the tables
-- can reorder the rows that hold query terms (threat model), not add one that holds none.
CREATE OR REPLACE FUNCTION pymem.keyword_hits_v2(p_user_hash char(64), p_terms bytea[], p_filter bytea[],
                                                 p_ends integer[], p_window timestamptz[], p_k integer)
    RETURNS TABLE (chunk_id uuid, score double precision, positions integer[])
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    -- Plans only, never results (ties are broken by id), but pinned like search_rows_v2's:
    -- a pooled connection's leftovers cannot turn the postings' btree off.
    SET enable_indexscan = on
    SET enable_indexonlyscan = on
    SET enable_bitmapscan = on
    SET enable_nestloop = on
    SET enable_sort = on
    SET enable_hashagg = on
    SET max_parallel_workers_per_gather = 0
    SET plan_cache_mode = 'auto'
AS $body$
DECLARE
    v_rows double precision := greatest(1, (SELECT sum(s.live_rows) FROM pymem.key_stats s
                                             WHERE s.user_hash OPERATOR(pg_catalog.=) p_user_hash));
BEGIN
    RETURN QUERY
    -- Each term's postings counted first (from the index alone, at most 501), then read
    -- for the counted terms, rarest first, up to 5,000 in all: a query of 64 terms each in
    -- 2,000 rows read and grouped 128,000 postings (382 ms, this revision's review).
    WITH df AS MATERIALIZED (
        SELECT q.pos::integer AS pos, q.term,
               (SELECT count(*) FROM (SELECT 1 FROM pymem.memory_terms t
                                       WHERE t.user_hash OPERATOR(pg_catalog.=) p_user_hash
                                         AND t.term OPERATOR(pg_catalog.=) q.term
                                       LIMIT 501) AS x) AS n
          FROM unnest(p_terms) WITH ORDINALITY AS q(term, pos)),
    w AS (SELECT d.pos, d.term, ln(1 + (v_rows - d.n + 0.5) / (d.n + 0.5)) AS idf
            FROM (SELECT df.*, sum(df.n) OVER (ORDER BY df.n, df.pos) AS upto FROM df
                   WHERE df.n BETWEEN 1 AND least(500, v_rows / 2)) AS d
           WHERE d.upto <= 5000),
    p AS MATERIALIZED (
        SELECT w.pos, t.chunk_id FROM w JOIN pymem.memory_terms t
            ON t.user_hash OPERATOR(pg_catalog.=) p_user_hash AND t.term OPERATOR(pg_catalog.=) w.term),
    -- Rare: an idf of at least 0.8 of a term in one row (in 1,000 rows: in at most 5).
    r AS (SELECT w.pos, w.idf, w.idf >= 0.8 * ln(1 + (v_rows - 0.5) / 1.5) AS rare FROM w),
    s AS (SELECT p.chunk_id, sum(r.idf) AS score, sum(r.idf) FILTER (WHERE r.rare) AS rare,
                 array_agg(p.pos ORDER BY p.pos) AS positions
            FROM p JOIN r ON r.pos = p.pos
           GROUP BY p.chunk_id)
    SELECT s.chunk_id, s.score, s.positions
      FROM s JOIN pymem.memory_chunks c
           ON c.user_hash OPERATOR(pg_catalog.=) p_user_hash AND c.id OPERATOR(pg_catalog.=) s.chunk_id
     WHERE s.rare >= 0.5 * (SELECT sum(r.idf) FROM r WHERE r.rare)
       AND pymem.filter_match(c.meta_tags, p_filter, p_ends)
       AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
     ORDER BY s.score DESC, s.chunk_id
     LIMIT p_k;
END
$body$;
COMMENT ON FUNCTION pymem.keyword_hits_v2(char, bytea[], bytea[], integer[], timestamptz[], integer) IS
    'Internal: the tenant''s p_k best unexpired rows by keyword relevance over the term tags, among those '
    'meeting the filter and the time window, with the positions of the terms each holds; for hybrid_rows_v2.';

-- pymem.hybrid_rows_v2: the fused search, for search_chunks_v3 (primary) and its
-- standby twin, which check the tenant and the read intent and audit the result, and
-- for search_hybrid_chunks through hybrid_rows. p_terms NULL: the vector search alone.
-- The vector search's p_k (search_rows_v3, filtered) and the keyword search's p_k are
-- fused by reciprocal rank (1/(60 + rank) from each list a row is in; a tie goes to
-- the row the keyword side found, then to the lower id); the p_k best are returned,
-- best first, each with its cosine distance, its keyword score and the query terms it
-- holds (both NULL when it is not among the keyword hits).
CREATE OR REPLACE FUNCTION pymem.hybrid_rows_v2(p_user_hash char(64), p_query public.vector, p_k integer,
                                                p_filter bytea[], p_ends integer[], p_window timestamptz[],
                                                p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[], created_at timestamptz, updated_at timestamptz,
                   expires_at timestamptz)
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    -- Plans only, never results (ties are broken by id), but pinned like search_rows_v2's:
    -- a pooled connection's leftovers cannot turn the postings' btree off.
    SET enable_indexscan = on
    SET enable_indexonlyscan = on
    SET enable_bitmapscan = on
    SET enable_nestloop = on
    SET enable_sort = on
    SET enable_hashagg = on
    SET max_parallel_workers_per_gather = 0
    SET plan_cache_mode = 'auto'
AS $body$
BEGIN
    IF p_terms IS NULL THEN
        RETURN QUERY
        SELECT r.id, r.doc_id, r.source, r.text_cipher, r.meta_cipher, r.emb_cipher, r.key_id, r.aad_version,
               r.embedding, r.distance, r.ref_cipher, NULL::double precision, NULL::integer[], r.created_at,
               r.updated_at, r.expires_at
          FROM pymem.search_rows_v3(p_user_hash, p_query, p_k, p_filter, p_ends, p_window) AS r;
        RETURN;
    END IF;
    -- Checked here too: with k = 0 the LIMITs below would skip search_rows_v3 and its check.
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_terms(p_terms);
    RETURN QUERY
    WITH v AS MATERIALIZED (
        SELECT r.id, row_number() OVER (ORDER BY r.distance, r.id) AS rank
          FROM pymem.search_rows_v3(p_user_hash, p_query, p_k, p_filter, p_ends, p_window) AS r),
    kw AS MATERIALIZED (
        SELECT h.chunk_id, h.score, h.positions,
               row_number() OVER (ORDER BY h.score DESC, h.chunk_id) AS rank
          FROM pymem.keyword_hits_v2(p_user_hash, p_terms, p_filter, p_ends, p_window, p_k) AS h),
    f AS MATERIALIZED (
        SELECT coalesce(v.id, kw.chunk_id) AS id, kw.score, kw.positions,
               coalesce(1.0 / (60 + v.rank), 0) + coalesce(1.0 / (60 + kw.rank), 0) AS fused
          FROM v FULL JOIN kw ON kw.chunk_id OPERATOR(pg_catalog.=) v.id
         ORDER BY 4 DESC, kw.score IS NULL, 1
         LIMIT p_k)
    SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
           c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query, c.ref_cipher, f.score, f.positions,
           c.created_at, c.updated_at, c.expires_at
      FROM f JOIN pymem.memory_chunks c
           ON c.user_hash OPERATOR(pg_catalog.=) p_user_hash AND c.id OPERATOR(pg_catalog.=) f.id
     -- Both sides left expired rows out; a row that expired since is left out here too.
     WHERE pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, '{}')
     ORDER BY f.fused DESC, f.score IS NULL, f.id;
END
$body$;
COMMENT ON FUNCTION pymem.hybrid_rows_v2(char, public.vector, integer, bytea[], integer[], timestamptz[],
                                         bytea[]) IS
    'Internal: the tenant''s p_k best unexpired rows in the time window by reciprocal-rank fusion of the vector '
    'and keyword searches (p_terms NULL: the vector search alone); for search_chunks_v3.';

-- Revision 0021's fused search, for search_hybrid_chunks: hybrid_rows_v2 without a time
-- window (expired rows are left out all the same), after that revision's filter check.
CREATE OR REPLACE FUNCTION pymem.hybrid_rows(p_user_hash char(64), p_query public.vector, p_k integer,
                                             p_filter bytea[], p_ends integer[], p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[])
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    PERFORM pymem.check_filter(p_filter, p_ends);
    PERFORM pymem.check_terms(p_terms);
    RETURN QUERY
    SELECT r.id, r.doc_id, r.source, r.text_cipher, r.meta_cipher, r.emb_cipher, r.key_id, r.aad_version,
           r.embedding, r.distance, r.ref_cipher, r.keyword_score, r.term_positions
      FROM pymem.hybrid_rows_v2(p_user_hash, p_query, p_k, p_filter, p_ends, '{}', p_terms) AS r;
END
$body$;
COMMENT ON FUNCTION pymem.hybrid_rows(char, public.vector, integer, bytea[], integer[], bytea[]) IS
    'Internal: hybrid_rows_v2 without a time window, for search_hybrid_chunks (revision 0021).';

CREATE OR REPLACE FUNCTION pymem.search_hybrid_chunks(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                                      p_k integer, p_filter bytea[], p_ends integer[],
                                                      p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[])
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.hybrid_search_digest(p_query, p_k, p_filter, p_ends, p_terms));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance,
        ref_cipher, keyword_score, term_positions IN
        SELECT * FROM pymem.hybrid_rows(p_user_hash, p_query, p_k, p_filter, p_ends, p_terms)
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'search', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.search_hybrid_chunks(char, uuid, public.vector, integer, bytea[], integer[], bytea[]) IS
    'The tenant''s k best chunks by keyword relevance (term tags) and vector similarity together, optionally '
    'filtered, sealed, best first. Needs a committed read intent (hybrid_search_digest); appends a result row '
    'with the ids returned.';

CREATE OR REPLACE FUNCTION pymem.search_hybrid_chunks_on_standby(p_user_hash char(64), p_ticket uuid,
                                                                 p_query public.vector, p_k integer,
                                                                 p_filter bytea[], p_ends integer[],
                                                                 p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[])
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pymem: search_hybrid_chunks_on_standby serves hot standbys; on the primary call '
                        'search_hybrid_chunks' USING ERRCODE = 'feature_not_supported';
    END IF;
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.hybrid_search_digest(p_query, p_k, p_filter, p_ends, p_terms));
    RETURN QUERY SELECT * FROM pymem.hybrid_rows(p_user_hash, p_query, p_k, p_filter, p_ends, p_terms);
END
$$;
COMMENT ON FUNCTION pymem.search_hybrid_chunks_on_standby(char, uuid, public.vector, integer, bytea[], integer[],
                                                          bytea[]) IS
    'search_hybrid_chunks on a hot standby (refused on a primary). The intent is written on the primary; the '
    'client appends the result row there with read_result.';

-- Back-filling rows written without terms (pymem index-terms): the app reads them,
-- opens their text and sends its terms. A row gets them only if its text ciphertext is
-- still the one read (p_text_digests: sha256 of it), so a row re-written meanwhile keeps
-- its own, and, unless p_replace (a rebuild, after the stemmer or the language changed),
-- only if it has none. Audited as 'index_terms' with the rows indexed:
-- not an update (the rows are as they were written, so a freshness check keeps their
-- records), and not without a trace.
CREATE OR REPLACE FUNCTION pymem.index_terms(p_user_hash char(64), p_ids uuid[], p_text_digests bytea[],
                                             p_terms bytea[], p_replace boolean) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[];
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_replace IS NULL OR cardinality(p_ids) IS NULL OR cardinality(p_ids) NOT BETWEEN 1 AND 10000
       OR array_position(p_ids, NULL) IS NOT NULL
       OR cardinality(p_text_digests) IS DISTINCT FROM cardinality(p_ids)
       OR (SELECT count(DISTINCT i) FROM unnest(p_ids) AS i) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'index_terms: give 1 to 10000 distinct ids (no NULL), each with its text digest and terms'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_row_terms(p_terms, cardinality(p_ids));
    -- The chain head serialises this against the tenant's writers (see write_chunks_v2).
    PERFORM pymem.audit_lock_chain(p_user_hash);
    v_ids := ARRAY(
        SELECT c.id FROM pymem.memory_chunks c
          JOIN unnest(p_ids, p_text_digests, p_terms) AS u(id, digest, terms) ON u.id = c.id
         WHERE c.user_hash = p_user_hash AND sha256(c.text_cipher) = u.digest
           AND (p_replace OR (octet_length(u.terms) > 0
                              AND NOT EXISTS (SELECT 1 FROM pymem.memory_terms t
                                               WHERE t.user_hash = p_user_hash AND t.chunk_id = c.id)))
         ORDER BY c.id);
    PERFORM pymem.put_terms(p_user_hash, v_ids,
                            ARRAY(SELECT u.terms FROM unnest(p_ids, p_terms) AS u(id, terms)
                                   WHERE u.id = ANY (v_ids) ORDER BY u.id));
    IF cardinality(v_ids) > 0 THEN
        PERFORM pymem.audit_append(p_user_hash, 'index_terms', 'write', NULL, NULL, v_ids);
    END IF;
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION pymem.index_terms(char, uuid[], bytea[], bytea[], boolean) IS
    'Gives the tenant''s rows written without keyword terms theirs (p_replace: every row given, anew), where the '
    'text is still the one read (pymem index-terms); audited (''index_terms''). Returns how many rows got terms.';
