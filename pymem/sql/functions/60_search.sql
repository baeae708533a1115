-- Search: the API entry points (search_chunks_v2 on the primary,
-- search_chunks_on_standby_v2 on a hot standby), filters on blind-index tags, and
-- the bucket graphs. The search itself is pymem.search_rows_v3 (61_search_rows.sql).
--
-- Buckets. memory_chunks has 64 partial HNSW indexes, one per search bucket (the
-- low 6 bits of user_hash, an HMAC, so buckets are even). A tenant's rows are then
-- a 64x larger share of the graph its query walks than of one shared graph: with
-- shared topics, a tenant of 3,000-10,000 rows in a million-row table is 0.3-1% of
-- every region of a single graph, and pgvector's filtered scan misses its nearest
-- rows; in its bucket's graph it is 15-40%. Each graph also builds in 1/64 of the
-- memory of one bulk build.
--
-- Filters. A filter is a conjunction of clauses, each clause any one of its tags
-- (16-byte HMACs of a metadata key and value under the tenant's blind-index key).
-- The tags are flattened into p_filter, and p_ends[i] is the position of clause
-- i's last tag. No clause: no filter.

CREATE OR REPLACE FUNCTION pymem.check_filter(p_filter bytea[], p_ends integer[]) RETURNS void
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
COMMENT ON FUNCTION pymem.check_filter(bytea[], integer[]) IS
    'Raises invalid_parameter_value unless the filter is up to 64 clauses of 16-byte tags.';

-- Negated clauses (revision 0022: $ne, $nin, $exists): a clause whose end is given
-- negated (-end) is met by a row that holds none of its tags. Otherwise as above.
CREATE OR REPLACE FUNCTION pymem.check_filter_v2(p_filter bytea[], p_ends integer[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Subscripts from 1 (the searches slice p_filter[1:end] and read p_ends[i - 1]), and ends
    -- within the tag count before abs() (abs of the least integer overflows).
    IF p_filter IS NULL OR p_ends IS NULL OR cardinality(p_filter) > 1024 OR cardinality(p_ends) > 64
       OR array_ndims(p_filter) > 1 OR array_ndims(p_ends) > 1 OR array_position(p_ends, NULL) IS NOT NULL
       OR coalesce(array_lower(p_filter, 1), 1) <> 1 OR coalesce(array_lower(p_ends, 1), 1) <> 1
       OR EXISTS (SELECT 1 FROM unnest(p_ends) AS e(pos) WHERE e.pos NOT BETWEEN -1024 AND 1024) THEN
        RAISE EXCEPTION 'pymem: a filter is up to 64 clauses of 16-byte tags, p_ends (negated: -end) increasing '
                        'to their count' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_ends) <> (SELECT count(*) FROM unnest(p_ends) WITH ORDINALITY AS e(pos, n)
                                WHERE abs(e.pos) > coalesce(abs(p_ends[e.n - 1]), 0))
       OR coalesce(abs(p_ends[cardinality(p_ends)]), 0) <> cardinality(p_filter)
       OR EXISTS (SELECT 1 FROM unnest(p_filter) AS t(tag) WHERE t.tag IS NULL OR octet_length(t.tag) <> 16) THEN
        RAISE EXCEPTION 'pymem: a filter is up to 64 clauses of 16-byte tags, p_ends (negated: -end) increasing '
                        'to their count' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_filter_v2(bytea[], integer[]) IS
    'Raises invalid_parameter_value unless the filter is up to 64 clauses of 16-byte tags, a negated clause '
    'ending at -end.';

-- Called once per candidate row, so no SET clause (a function with one saves and
-- restores the setting on every call); every name in it is schema-qualified instead.
-- Callers skip it for a filter of one positive clause, which the && on it decides.
CREATE OR REPLACE FUNCTION pymem.filter_match(p_tags bytea[], p_filter bytea[], p_ends integer[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    RETURN coalesce((SELECT pg_catalog.bool_and(
                                (p_tags OPERATOR(pg_catalog.&&)
                                 p_filter[coalesce(pg_catalog.abs(p_ends[i OPERATOR(pg_catalog.-) 1]), 0)
                                          OPERATOR(pg_catalog.+) 1:pg_catalog.abs(p_ends[i])])
                                OPERATOR(pg_catalog.<>) (p_ends[i] OPERATOR(pg_catalog.<) 0))
                       FROM pg_catalog.generate_subscripts(p_ends, 1) AS i), true);
COMMENT ON FUNCTION pymem.filter_match(bytea[], bytea[], integer[]) IS
    'Whether a row''s tags meet every clause of the filter: one of its tags, or, negated, none.';

-- A time window (revision 0022): created after, created before, updated after, updated
-- before, each NULL for no bound, or no element at all for no window. A row never
-- updated was last updated when it was created.
CREATE OR REPLACE FUNCTION pymem.check_window(p_window timestamptz[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_window IS NULL OR array_ndims(p_window) > 1 OR cardinality(p_window) NOT IN (0, 4)
       OR (cardinality(p_window) = 4 AND array_lower(p_window, 1) <> 1) THEN
        RAISE EXCEPTION 'pymem: a time window is 4 bounds (created after, created before, updated after, updated '
                        'before; NULL: none) or none' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_window(timestamptz[]) IS
    'Raises invalid_parameter_value unless the time window is 4 bounds (each NULL or not) or empty.';

-- Whether a row is returned at all: not expired (at the transaction's start), and inside
-- the time window. Inlinable (no SET clause; every name qualified), called per candidate.
CREATE OR REPLACE FUNCTION pymem.row_in_window(p_created timestamptz, p_updated timestamptz,
                                               p_expires timestamptz, p_window timestamptz[]) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
    RETURN (p_expires IS NULL OR p_expires OPERATOR(pg_catalog.>) pg_catalog.now())
           AND (p_window[1] IS NULL OR p_created OPERATOR(pg_catalog.>) p_window[1])
           AND (p_window[2] IS NULL OR p_created OPERATOR(pg_catalog.<) p_window[2])
           AND (p_window[3] IS NULL OR COALESCE(p_updated, p_created) OPERATOR(pg_catalog.>) p_window[3])
           AND (p_window[4] IS NULL OR COALESCE(p_updated, p_created) OPERATOR(pg_catalog.<) p_window[4]);
COMMENT ON FUNCTION pymem.row_in_window(timestamptz, timestamptz, timestamptz, timestamptz[]) IS
    'Whether a row has not expired and lies in the time window (created/updated after/before; NULL: no bound).';

-- Immutable and inlinable (no SET clause; every name qualified): the index
-- predicates and search_rows_v3's literal bucket clauses reduce to the same
-- expression, which is how the planner proves a partial index applies.
CREATE OR REPLACE FUNCTION pymem.search_bucket(p_user_hash char(64)) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.get_byte(pg_catalog.decode(pg_catalog."right"(p_user_hash::pg_catalog.text, 2), 'hex'), 0)
           OPERATOR(pg_catalog.&) 63
$$;
COMMENT ON FUNCTION pymem.search_bucket(char) IS
    'The search bucket of a tenant (0-63: the low 6 bits of its hash): which partial HNSW graph holds its rows.';

-- The whole table, or on Citus the tenant's shard (the coordinator's table is an
-- empty shell there).
CREATE OR REPLACE FUNCTION pymem.index_rows(p_user_hash char(64)) RETURNS double precision
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relation regclass := 'pymem.memory_chunks'::regclass;
    v_shard    bigint;
BEGIN
    IF pymem.chunks_distributed() THEN
        EXECUTE 'SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)'
            INTO v_shard USING v_relation, p_user_hash;
        v_relation := to_regclass(format('pymem.memory_chunks_%s', v_shard));
    END IF;
    RETURN (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c WHERE c.oid = v_relation);
END
$$;
COMMENT ON FUNCTION pymem.index_rows(char) IS
    'Rows (catalog estimate) of the table, or on Citus of the tenant''s shard.';

-- Rows in the index named p_index in schema pymem (on Citus, its copy on the
-- tenant's shard): a bucket or solo graph, by the names pymem gives them (only the
-- owner creates indexes on memory_chunks), from the catalog estimate that VACUUM,
-- ANALYZE and CREATE INDEX keep. NULL when the index is missing (dropped for a bulk
-- load) or not valid (a CREATE INDEX CONCURRENTLY still running, or one that failed).
CREATE OR REPLACE FUNCTION pymem.graph_index_rows(p_user_hash char(64), p_index text) RETURNS double precision
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_shard bigint;
BEGIN
    IF pymem.chunks_distributed() THEN
        EXECUTE 'SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)'
            INTO v_shard USING 'pymem.memory_chunks'::regclass, p_user_hash;
        p_index := p_index || '_' || v_shard;
    END IF;
    RETURN (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
             WHERE c.oid = to_regclass(format('pymem.%I', p_index)) AND i.indisvalid AND i.indisready);
END
$$;
COMMENT ON FUNCTION pymem.graph_index_rows(char, text) IS
    'Rows in the valid index of that name in schema pymem (on Citus, its copy on the tenant''s shard); '
    'NULL if none.';

CREATE OR REPLACE FUNCTION pymem.search_graph_rows(p_user_hash char(64)) RETURNS double precision
    LANGUAGE sql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN pymem.graph_index_rows(p_user_hash, 'memory_chunks_embedding_hnsw_' || pymem.search_bucket(p_user_hash));
COMMENT ON FUNCTION pymem.search_graph_rows(char) IS
    'Rows in the bucket graph a tenant''s search walks (on Citus, on the tenant''s shard).';

-- Solo graphs (revision 0017). A tenant with pymem.tuning.solo_graph_min_rows rows
-- or more (up to solo_graph_max_count tenants, largest first) gets an HNSW graph of
-- its own rows alone: `pymem solo-graphs`, run by the DBA, builds it with CREATE INDEX
-- CONCURRENTLY ... WHERE user_hash = '<its hash>' (pgvector's documented way to
-- filter by one of a few values; for many it advises partitioning, hence the cap).
-- Its searches walk that graph instead of its bucket's. No other tenant's rows are in
-- it, so no neighbour can crowd the region a query lands in (A7 of the second attack
-- round), and its recall is that of a graph of the tenant's rows, not of one that
-- mixed them with the rest of its bucket. The name is 128 bits of the sha256 of the
-- hash (two tenants' would coincide only after about 2^64 tenants, and choosing a
-- hash that matches a given one takes 2^128 tries; a prefix of the hash itself could
-- be shared by a hash another tenant registers); the search's own WHERE clause,
-- not the index, decides which rows it returns.
-- STABLE, not IMMUTABLE: convert_to is.
CREATE OR REPLACE FUNCTION pymem.solo_graph_name(p_user_hash char(64)) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN 'memory_chunks_solo_' OPERATOR(pg_catalog.||) pg_catalog."left"(pg_catalog.encode(
        pg_catalog.sha256(pg_catalog.convert_to(p_user_hash::pg_catalog.text, 'UTF8')), 'hex'), 32);
COMMENT ON FUNCTION pymem.solo_graph_name(char) IS
    'The name of a tenant''s solo graph (an HNSW index of its rows alone), whether or not it exists.';

CREATE OR REPLACE FUNCTION pymem.solo_graph_rows(p_user_hash char(64)) RETURNS double precision
    LANGUAGE sql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN pymem.graph_index_rows(p_user_hash, pymem.solo_graph_name(p_user_hash));
COMMENT ON FUNCTION pymem.solo_graph_rows(char) IS
    'Rows in the tenant''s solo graph, NULL if it has none (or it is not valid yet).';

-- Every row of a solo graph is the tenant's: ef_search need not cover other tenants'
-- rows. At least 200: queries at the centre of a 33,291-row tenant's densest topic,
-- on its solo graph alone, had recall@10 0.981 at 100, 0.989 at 150, 0.999 at 200
-- and 300 (p95 of the walk 3.3, 3.8, 4.7 and 6.0 ms). At least 1/400 of the graph's
-- rows, as for bucket graphs (see search_rows_v3), at most 1,000.
CREATE OR REPLACE FUNCTION pymem.solo_graph_ef_search(p_rows double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN least(1000, greatest(200, pg_catalog.ceil(p_rows / 400)))::integer;
COMMENT ON FUNCTION pymem.solo_graph_ef_search(double precision) IS
    'The ef_search of a walk on a solo graph of p_rows rows.';

-- The statement of a walk on the tenant's solo graph, for search_rows_v3 to EXECUTE
-- (parameters: query, lead, filter, ends, k, one clause, window): a bucket arm's
-- statement (see search_rows_v3) with the tenant's hash a literal, so that the planner
-- proves the solo graph's partial index applies. Its k hits, or no row when the walk
-- found fewer than k. STABLE, not IMMUTABLE: format is.
CREATE OR REPLACE FUNCTION pymem.solo_graph_walk_v2(p_user_hash char(64)) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN pg_catalog.format($walk$
        WITH hits AS MATERIALIZED (
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) $1 AS distance,
                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
              FROM pymem.memory_chunks c
             WHERE c.user_hash OPERATOR(pg_catalog.=) %L::pg_catalog.bpchar
               AND ($2 OPERATOR(pg_catalog.=) 0 OR c.meta_tags OPERATOR(pg_catalog.&&) $3[1:$2])
               AND ($6 OR pymem.filter_match(c.meta_tags, $3, $4))
               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, $7)
             ORDER BY c.embedding OPERATOR(public.<=>) $1
             LIMIT $5)
        SELECT * FROM hits h
         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) $5
         ORDER BY h.distance + 0$walk$, p_user_hash);
COMMENT ON FUNCTION pymem.solo_graph_walk_v2(char) IS
    'Internal: the statement of a walk on the tenant''s solo graph, for search_rows_v3.';

CREATE OR REPLACE FUNCTION pymem.search_chunks_v2(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                                  p_k integer, p_filter bytea[], p_ends integer[])
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
COMMENT ON FUNCTION pymem.search_chunks_v2(char, uuid, public.vector, integer, bytea[], integer[]) IS
    'The tenant''s k nearest chunks (cosine distance), optionally filtered by blind-index tags, sealed, '
    'nearest first. Needs a committed read intent (filtered_search_digest); appends a result row with '
    'the ids returned.';

-- A standby sees a row only once its commit has been replayed, so an intent
-- visible here is durable on the primary, and it is checked exactly as there.
CREATE OR REPLACE FUNCTION pymem.search_chunks_on_standby_v2(p_user_hash char(64), p_ticket uuid,
                                                             p_query public.vector, p_k integer,
                                                             p_filter bytea[], p_ends integer[])
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
COMMENT ON FUNCTION pymem.search_chunks_on_standby_v2(char, uuid, public.vector, integer, bytea[], integer[]) IS
    'search_chunks_v2 on a hot standby (refused on a primary). The intent is written on the primary; the '
    'client appends the result row there with read_result.';

-- Revision 0022's search: one function for vector and hybrid search (p_terms NULL: the
-- vector search alone), with negated filter clauses, a time window, expired rows left
-- out, and each row's timestamps. Needs a committed intent (search_digest_v3).
CREATE OR REPLACE FUNCTION pymem.search_chunks_v3(p_user_hash char(64), p_ticket uuid, p_query public.vector,
                                                  p_k integer, p_filter bytea[], p_ends integer[],
                                                  p_window timestamptz[], p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[], created_at timestamptz, updated_at timestamptz,
                   expires_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_ids uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.search_digest_v3(p_query, p_k, p_filter, p_ends, p_window, p_terms));
    FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance,
        ref_cipher, keyword_score, term_positions, created_at, updated_at, expires_at IN
        SELECT * FROM pymem.hybrid_rows_v2(p_user_hash, p_query, p_k, p_filter, p_ends, p_window, p_terms)
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'search', 'result', p_ticket, NULL, v_ids);
END
$$;
COMMENT ON FUNCTION pymem.search_chunks_v3(char, uuid, public.vector, integer, bytea[], integer[], timestamptz[],
                                           bytea[]) IS
    'The tenant''s k best unexpired chunks by vector similarity (p_terms NULL) or by keyword relevance and vector '
    'similarity together, optionally filtered (negated clauses too) and limited to a time window, sealed, best '
    'first, with their timestamps. Needs a committed read intent (search_digest_v3); appends a result row with '
    'the ids returned.';

CREATE OR REPLACE FUNCTION pymem.search_chunks_on_standby_v3(p_user_hash char(64), p_ticket uuid,
                                                             p_query public.vector, p_k integer,
                                                             p_filter bytea[], p_ends integer[],
                                                             p_window timestamptz[], p_terms bytea[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, keyword_score double precision,
                   term_positions integer[], created_at timestamptz, updated_at timestamptz,
                   expires_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pymem: search_chunks_on_standby_v3 serves hot standbys; on the primary call '
                        'search_chunks_v3' USING ERRCODE = 'feature_not_supported';
    END IF;
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search',
                                     pymem.search_digest_v3(p_query, p_k, p_filter, p_ends, p_window, p_terms));
    RETURN QUERY SELECT * FROM pymem.hybrid_rows_v2(p_user_hash, p_query, p_k, p_filter, p_ends, p_window, p_terms);
END
$$;
COMMENT ON FUNCTION pymem.search_chunks_on_standby_v3(char, uuid, public.vector, integer, bytea[], integer[],
                                                      timestamptz[], bytea[]) IS
    'search_chunks_v3 on a hot standby (refused on a primary). The intent is written on the primary; the client '
    'appends the result row there with read_result.';
