-- pymem.filtered_nearest_v2: for search_rows_v3, the tenant's k rows nearest the query
-- among the first p_limit rows that meet the filter and the time window (and have not
-- expired), exact, each with the number of matches
-- read (the caller uses the rows only when fewer than p_limit matched: then they are
-- the k nearest of all). One statement, so the count and the rows come from one scan
-- and one snapshot (a ctid then names the row version the scan saw). It keeps every
-- match it reads, with its distance (about 40 bytes, and one distance of the query
-- each): for a bounded read, not for all of a large filter's matches. The scan goes through the tenant's btree: row security keeps
-- the GIN index on meta_tags out of the plan (&& is not leakproof); filter_match checks
-- every clause (p_lead: the tags of a leading positive clause, 0 if none). Counting in one statement and reading in another read a rare
-- filter's tenant twice. plpgsql, not a SQL-standard body: that would make the
-- table's columns depend on this function (no ALTER COLUMN without dropping it).
CREATE OR REPLACE FUNCTION pymem.filtered_nearest_v2(p_user_hash char(64), p_query public.vector, p_k integer,
                                                     p_filter bytea[], p_ends integer[], p_lead integer,
                                                     p_window timestamptz[], p_limit integer)
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, created_at timestamptz,
                   updated_at timestamptz, expires_at timestamptz, matches bigint)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    RETURN QUERY
    WITH m AS MATERIALIZED (
        SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
          FROM pymem.memory_chunks n
         WHERE n.user_hash OPERATOR(pg_catalog.=) p_user_hash
           AND (p_lead OPERATOR(pg_catalog.=) 0 OR n.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_lead])
           AND pymem.filter_match(n.meta_tags, p_filter, p_ends)
           AND pymem.row_in_window(n.created_at, n.updated_at, n.expires_at, p_window)
         LIMIT p_limit),
    t AS (SELECT m.tid, m.distance FROM m ORDER BY m.distance LIMIT p_k)
    SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
           c.embedding::public.vector, t.distance, c.ref_cipher, c.created_at, c.updated_at, c.expires_at,
           (SELECT pg_catalog.count(*) FROM m)
      FROM t JOIN pymem.memory_chunks c ON c.ctid OPERATOR(pg_catalog.=) t.tid
     WHERE c.user_hash OPERATOR(pg_catalog.=) p_user_hash
     ORDER BY t.distance;
END
$body$;
COMMENT ON FUNCTION pymem.filtered_nearest_v2(char, public.vector, integer, bytea[], integer[], integer,
                                              timestamptz[], integer) IS
    'Internal: the tenant''s k rows nearest the query among a filter''s and a time window''s matches (at most '
    'p_limit of them read), each with the number read; for search_rows_v3.';

-- pymem.search_rows_v3: the search itself, for search_chunks_v3 (primary),
-- search_chunks_on_standby_v3, hybrid_rows_v2 and, through search_rows_v2, the older search functions. Internal: callers go
-- through those, which check the tenant and the read intent and audit the result.
--
-- Which rows it examines depends on no caller setting: every setting that steers
-- the search (hnsw.*, enable_*, plan_cache_mode, row_security) is pinned below, so
-- a pooled connection's leftovers cannot change its result. On Citus the call runs
-- on the worker holding the tenant's shard, so the settings apply there.
--
-- Two paths:
--   * exact: the tenant's rows (or a filter's matches) through the btree on
--     user_hash, top k by distance. The top k
--     are chosen among narrow (ctid, distance) pairs and only those k rows are
--     read whole, by ctid, in the same statement (one snapshot, so a ctid names
--     the row version the scan saw): a sort copies each row it is offered, and
--     a row is about 2 kB.
--   * graph: the tenant's solo graph (see pymem.solo_graph_name) if it has a valid
--     one (below), else its bucket graph, without iterative scan: the walk keeps the
--     ef_search rows nearest the query it found, and the tenant's (or the
--     filter's) among them are its hits (the rows an iterative scan's first batch
--     returns: with k of them it would not have gone on either). Fewer than k there means other rows
--     crowd the query's region (a neighbour in the same bucket may have put tens
--     of thousands there): the exact path then answers, in the same call. With
--     an iterative scan the walk would go on into the crowd until
--     hnsw.max_scan_tuples, then return the farther rows it had passed, k of them,
--     with nothing to tell them from the right ones (A7 of the second attack round:
--     recall 0.1, 100 ms).
-- The graph is taken when the tenant (or the filter's matches) is too large for
-- the exact limits of pymem.tuning, or when the exact scan would read more than
-- 20 rows per unit of ef_search (measured: the scan costs about 1 us a row, the
-- graph 12-21 us per unit of ef_search). Either path returns correct rows under
-- row security; counts only pick the path.
--
-- In a solo graph every row is the tenant's: only its own rows that fail the filter
-- can leave the walk short of k, never a neighbour's. A filtered search there first
-- walks without counting: when the walk's ef_search nearest rows hold k matches
-- (a filter matching a tenth of the rows or more, near the query), those are the
-- answer, as on a bucket graph. Counting the matches first cost more than the walk
-- (measured on a 33,291-row tenant, a filter on half its rows: the count of 1,001
-- matches 4.5-7 ms, the walk 2.7-3.7 ms): row security keeps the GIN index on
-- meta_tags out of any plan (&& is not leakproof), so a count reads the tenant's
-- btree range. Only a walk left short of k counts, up to 1,000 matches: that many or
-- fewer are read exactly, more are walked again, extending itself (iterative scan,
-- strict order). The solo walk is planned per call (EXECUTE, the tenant's hash a
-- literal, so the planner proves the partial index applies): a generic plan cannot
-- name one tenant's index.
--
-- The 64 arms of the CASE differ only in their bucket literal. The arm for bucket
-- 0 is the template: `pymem-dev sql arms` writes the other 63 from it, and a test
-- checks that they match it.
CREATE OR REPLACE FUNCTION pymem.search_rows_v3(p_user_hash char(64), p_query public.vector, p_k integer,
                                                p_filter bytea[], p_ends integer[], p_window timestamptz[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea, created_at timestamptz,
                   updated_at timestamptz, expires_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
    SET hnsw.iterative_scan = 'off'
    SET hnsw.ef_search = '100'
    SET hnsw.max_scan_tuples = '20000'
    SET hnsw.scan_mem_multiplier = '1'
    SET enable_sort = off
    SET enable_seqscan = on
    SET enable_indexscan = on
    SET enable_bitmapscan = on
    SET enable_indexonlyscan = on
    SET max_parallel_workers_per_gather = 0
    SET enable_tidscan = on
    SET enable_nestloop = on
    SET plan_cache_mode = 'auto'
AS $body$
DECLARE
    v_filtered  boolean;
    -- The tags of the filter's first clause when it is positive (the client puts positive
    -- clauses first), which the walk tests with && before the whole filter; 0 if none.
    v_lead      integer := CASE WHEN p_ends[1] > 0 THEN p_ends[1] ELSE 0 END;
    -- No clause, or one positive clause: && on v_lead decides, filter_match is skipped.
    v_one       boolean := cardinality(p_ends) = 0 OR (cardinality(p_ends) = 1 AND p_ends[1] > 0);
    v_exact_max integer;
    v_rows      bigint;
    v_graph     double precision;
    v_solo      boolean := false;
    v_ef        integer;
    v_solo_walk text;
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'search_chunks: k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.check_filter_v2(p_filter, p_ends);
    PERFORM pymem.check_window(p_window);
    -- A time window narrows the rows as a filter does. Expiry does not count: expired
    -- rows are few until a purge, and a walk left short of k by them answers exactly.
    v_filtered := cardinality(p_ends) > 0 OR EXISTS (SELECT 1 FROM unnest(p_window) AS w(at) WHERE w.at IS NOT NULL);
    SELECT CASE WHEN v_filtered THEN t.filtered_exact_max_rows ELSE t.exact_search_max_rows END
      INTO v_exact_max FROM pymem.tuning t;
    IF v_filtered THEN
        v_graph := pymem.solo_graph_rows(p_user_hash);
        v_solo := v_graph IS NOT NULL;
        IF v_solo THEN
            -- The first walk (see above): its ef_search nearest rows, no iterative scan.
            v_ef := pymem.solo_graph_ef_search(v_graph);
            v_solo_walk := pymem.solo_graph_walk_v2(p_user_hash);
            PERFORM set_config('hnsw.ef_search', v_ef::text, true);  -- local to this call
            RETURN QUERY EXECUTE v_solo_walk USING p_query, v_lead, p_filter, p_ends, p_k, v_one, p_window;
            IF FOUND THEN
                RETURN;
            END IF;
            -- Short of k: a filter's matches are read exactly up to 1,000 here, not
            -- v_exact_max (counting then reading 5,000 matches cost 20 ms and more).
            v_exact_max := least(v_exact_max, 1000);
        END IF;
        -- Up to v_exact_max matches: the exact answer, from the same scan that counts them.
        -- More: v_rows is v_exact_max + 1, and the graph answers (below).
        v_rows := 0;
        FOR id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance,
            ref_cipher, created_at, updated_at, expires_at, v_rows IN
            SELECT * FROM pymem.filtered_nearest_v2(p_user_hash, p_query, p_k, p_filter, p_ends, v_lead, p_window,
                                                    v_exact_max + 1)
        LOOP
            EXIT WHEN v_rows > v_exact_max;
            RETURN NEXT;
        END LOOP;
        IF v_rows <= v_exact_max THEN
            RETURN;
        END IF;
    ELSE
        SELECT coalesce(sum(s.live_rows), 0) INTO v_rows FROM pymem.key_stats s WHERE s.user_hash = p_user_hash;
        -- 2,000 = 20 x the least ef_search: below it the exact scan is always cheaper.
        IF v_rows > least(v_exact_max, 2000) THEN
            v_graph := pymem.solo_graph_rows(p_user_hash);
            v_solo := v_graph IS NOT NULL;
            IF v_solo THEN
                v_ef := pymem.solo_graph_ef_search(v_graph);
                v_solo_walk := pymem.solo_graph_walk_v2(p_user_hash);
            END IF;
        END IF;
    END IF;
    IF NOT v_solo AND (v_rows > v_exact_max OR (NOT v_filtered AND v_rows > 2000)) THEN
        -- A filtered scan sees about k / share candidates before it has k matches;
        -- ef_search covers 8x that (measured at 1M rows with shared topics: 2x gave
        -- recall@10 0.969, 4x 0.976, 8x 0.995 for tenants of 3k-10k rows), at
        -- least 100 (at 40, pgvector's default, whole queries of large tenants
        -- came back empty-handed), at least 1/400 of the graph's rows (at 1M
        -- rows, ef_search 100 on a 93k-row graph left 2 of 40 queries of the
        -- tenant holding 90% of it at recall 0.1 and 0.0: the greedy descent
        -- ended in another topic's region), and at most 1000. The filtered count
        -- stops at v_exact_max + 1, a lower bound: the estimate errs towards a
        -- wider search.
        v_graph := pymem.search_graph_rows(p_user_hash);
        v_ef := least(1000, greatest(100, ceil(v_graph / 400), ceil(8 * p_k / least(1.0, v_rows / v_graph))));
    END IF;
    -- The graph when the tenant is too large for the exact scan, or when the scan
    -- would read more than 20 rows per unit of ef_search (see above). No graph
    -- (its index dropped for a bulk load): the exact scan.
    IF v_rows > v_exact_max OR (NOT v_filtered AND v_graph IS NOT NULL AND v_rows > 20 * v_ef) THEN
        PERFORM set_config('hnsw.ef_search', v_ef::text, true);  -- local to this call
        IF v_solo THEN
            -- A bucket arm's statement (below), on the tenant's solo graph. Filtered,
            -- the walk goes on past its first ef_search rows until it has k matches or
            -- has read hnsw.max_scan_tuples rows (pinned above): the rows it passes
            -- are the tenant's own, which A7's neighbour cannot add to. Short of k, the
            -- exact path answers, as on a bucket graph.
            IF v_filtered THEN
                PERFORM set_config('hnsw.iterative_scan', 'strict_order', true);
            END IF;
            RETURN QUERY EXECUTE v_solo_walk USING p_query, v_lead, p_filter, p_ends, p_k, v_one, p_window;
        ELSE
            -- One statement per bucket graph, its bucket a literal, so the planner
            -- proves that graph's partial index applies. Plain PostgreSQL keeps one
            -- generic plan for each (planned per call, the 63 other graphs' partial
            -- indexes cost 0.3 ms); Citus keeps custom plans (see the exact path).
            IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
                PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
            END IF;
            CASE pymem.search_bucket(p_user_hash)
                -- The tenant's hits among the walk's ef_search rows, returned only when
                -- there are k of them (FOUND below), in one statement (one snapshot). The
                -- k are sorted by distance on the way out; "+ 0" (pgvector's documented
                -- form) keeps that sort: from PostgreSQL 17 the planner takes a
                -- materialized CTE's rows as already sorted by its ORDER BY key.
                WHEN 0 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 0
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                -- generated arms: begin
                WHEN 1 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 1
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 2 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 2
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 3 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 3
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 4 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 4
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 5 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 5
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 6 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 6
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 7 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 7
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 8 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 8
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 9 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 9
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 10 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 10
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 11 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 11
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 12 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 12
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 13 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 13
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 14 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 14
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 15 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 15
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 16 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 16
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 17 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 17
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 18 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 18
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 19 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 19
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 20 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 20
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 21 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 21
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 22 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 22
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 23 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 23
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 24 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 24
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 25 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 25
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 26 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 26
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 27 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 27
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 28 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 28
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 29 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 29
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 30 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 30
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 31 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 31
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 32 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 32
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 33 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 33
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 34 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 34
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 35 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 35
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 36 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 36
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 37 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 37
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 38 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 38
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 39 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 39
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 40 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 40
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 41 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 41
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 42 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 42
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 43 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 43
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 44 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 44
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 45 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 45
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 46 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 46
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 47 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 47
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 48 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 48
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 49 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 49
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 50 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 50
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 51 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 51
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 52 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 52
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 53 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 53
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 54 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 54
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 55 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 55
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 56 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 56
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 57 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 57
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 58 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 58
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 59 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 59
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 60 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 60
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 61 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 61
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 62 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 62
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                WHEN 63 THEN
                    RETURN QUERY
                        WITH hits AS MATERIALIZED (
                            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                                   c.aad_version, c.embedding::public.vector, c.embedding OPERATOR(public.<=>) p_query AS distance,
                                   c.ref_cipher, c.created_at, c.updated_at, c.expires_at
                              FROM pymem.memory_chunks c
                             WHERE c.user_hash = p_user_hash
                               AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 63
                               AND (v_lead = 0 OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                               AND (v_one OR pymem.filter_match(c.meta_tags, p_filter, p_ends))
                               AND pymem.row_in_window(c.created_at, c.updated_at, c.expires_at, p_window)
                             ORDER BY c.embedding OPERATOR(public.<=>) p_query
                             LIMIT p_k)
                        SELECT * FROM hits h
                         WHERE (SELECT pg_catalog.count(*) FROM hits) OPERATOR(pg_catalog.=) p_k
                         ORDER BY h.distance + 0;
                -- generated arms: end
            END CASE;
        END IF;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Fewer than k: the ef_search nearest rows of the walk held fewer than k of the
        -- tenant's (another tenant's rows crowd the query's region): exact, in this call.
        PERFORM set_config('plan_cache_mode', 'auto', true);
    END IF;
    IF v_filtered THEN
        -- The walk left short of k: every match, exactly, keeping only the nearest k
        -- (pymem.filtered_nearest would keep every match to count them). "+ 0": the
        -- ORDER BY no longer matches the HNSW operator, so the rows come from the
        -- tenant's btree and the top k are exact.
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding::public.vector, t.distance, c.ref_cipher, c.created_at, c.updated_at, c.expires_at
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                       AND (v_lead = 0 OR n.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:v_lead])
                       AND (v_one OR pymem.filter_match(n.meta_tags, p_filter, p_ends))
                       AND pymem.row_in_window(n.created_at, n.updated_at, n.expires_at, p_window)
                     ORDER BY (n.embedding OPERATOR(public.<=>) p_query) + 0
                     LIMIT p_k) t
              JOIN pymem.memory_chunks c ON c.ctid = t.tid
             WHERE c.user_hash = p_user_hash
             ORDER BY t.distance;
    ELSIF v_rows > 0 THEN
        -- One generic plan for every tenant, through the tenant's btree: planned
        -- per call (as plpgsql does while a custom plan looks cheaper) it cost
        -- more than a small tenant's scan. Local to this call, like ef_search.
        -- Not with Citus installed: its planner routes this join to the tenant's
        -- shard only with the parameters known, so it keeps custom plans.
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
            PERFORM set_config('enable_seqscan', 'off', true);
        END IF;
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding::public.vector, t.distance, c.ref_cipher, c.created_at, c.updated_at, c.expires_at
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                       AND pymem.row_in_window(n.created_at, n.updated_at, n.expires_at, p_window)
                     ORDER BY (n.embedding OPERATOR(public.<=>) p_query) + 0
                     LIMIT p_k) t
              JOIN pymem.memory_chunks c ON c.ctid = t.tid
             WHERE c.user_hash = p_user_hash
             ORDER BY t.distance;
    END IF;
END
$body$;
COMMENT ON FUNCTION pymem.search_rows_v3(char, public.vector, integer, bytea[], integer[], timestamptz[]) IS
    'Internal: the tenant''s k nearest rows that meet the filter (negated clauses too) and the time window and '
    'have not expired, exact or on its solo or bucket graph, with every setting that steers the search pinned. '
    'Not audited itself: called by the audited search functions.';

-- Revision 0016's search, for search_chunks_v2 and the older functions: search_rows_v3
-- without a time window (expired rows are left out all the same), after the filter check
-- of its time (positive clauses only).
CREATE OR REPLACE FUNCTION pymem.search_rows_v2(p_user_hash char(64), p_query public.vector, p_k integer,
                                                p_filter bytea[], p_ends integer[])
    RETURNS TABLE (id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea,
                   emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector,
                   distance double precision, ref_cipher bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $body$
BEGIN
    PERFORM pymem.check_filter(p_filter, p_ends);
    RETURN QUERY
    SELECT r.id, r.doc_id, r.source, r.text_cipher, r.meta_cipher, r.emb_cipher, r.key_id, r.aad_version,
           r.embedding, r.distance, r.ref_cipher
      FROM pymem.search_rows_v3(p_user_hash, p_query, p_k, p_filter, p_ends, '{}') AS r;
END
$body$;
COMMENT ON FUNCTION pymem.search_rows_v2(char, public.vector, integer, bytea[], integer[]) IS
    'Internal: search_rows_v3 without a time window, for the searches of revisions before 0022. Not audited '
    'itself: called by the audited search functions.';
