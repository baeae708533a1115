-- pymem 0013: every function and its grants as revisions 0001-0013 left them (history/).
-- Made once, when the current definitions moved to functions/ (0014), from the catalog
-- of a database at 0013: pg_get_functiondef() of each function, by name, then its
-- grants in the order the catalog lists them. Re-applied when 0014 is downgraded, so
-- that the database is again exactly what 0013 made. Never edited (checksums.sha256).

SELECT '[0]'::public.vector;

SET LOCAL ROLE pymem_owner;

CREATE OR REPLACE FUNCTION pymem.audit_append(p_user_hash character, p_operation text, p_phase text, p_ticket uuid, p_params_digest bytea, p_chunk_ids uuid[])
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_head pymem.audit_chain_heads := pymem.audit_lock_chain(p_user_hash);
    v_row  pymem.audit_log;
BEGIN
    v_row.chain_pos := v_head.chain_pos + 1;
    v_row.at := greatest(clock_timestamp(), v_head.at);
    v_row.db_role := session_user;
    v_row.txid := pg_current_xact_id();
    v_row.row_hash := pymem.audit_row_digest(v_head.row_hash, p_user_hash, v_row.chain_pos, v_row.at,
        v_row.db_role, p_operation, p_phase, p_ticket, p_params_digest, p_chunk_ids,
        cardinality(p_chunk_ids), v_row.txid);
    INSERT INTO pymem.audit_log (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest,
                                 chunk_ids, row_count, txid, prev_hash, row_hash)
    VALUES (p_user_hash, v_row.chain_pos, v_row.at, v_row.db_role, p_operation, p_phase, p_ticket,
            p_params_digest, p_chunk_ids, cardinality(p_chunk_ids), v_row.txid, v_head.row_hash, v_row.row_hash);
    UPDATE pymem.audit_chain_heads h SET chain_pos = v_row.chain_pos, row_hash = v_row.row_hash, at = v_row.at
     WHERE h.user_hash = p_user_hash;
    RETURN v_row.chain_pos;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_direct_write()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.audit_append(OLD.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[OLD.id]);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_hash <> OLD.user_hash) THEN
        PERFORM pymem.audit_append(NEW.user_hash, lower(TG_OP), 'write', NULL, NULL, ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_heads()
 RETURNS TABLE(user_hash character, chain_pos bigint, row_hash bytea)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN QUERY
    SELECT h.user_hash, h.chain_pos, h.row_hash FROM pymem.audit_chain_heads h WHERE h.chain_pos > 0
     ORDER BY h.user_hash;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_lock_chain(p_user_hash character)
 RETURNS pymem.audit_chain_heads
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_head pymem.audit_chain_heads;
BEGIN
    SELECT h.* INTO v_head FROM pymem.audit_chain_heads h WHERE h.user_hash = p_user_hash FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pymem.audit_chain_heads (user_hash, chain_pos, row_hash, at)
        VALUES (p_user_hash, 0, '\x', '-infinity') ON CONFLICT DO NOTHING;
        SELECT h.* INTO STRICT v_head FROM pymem.audit_chain_heads h WHERE h.user_hash = p_user_hash FOR UPDATE;
    END IF;
    RETURN v_head;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_reject_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    RAISE EXCEPTION 'pymem.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_row_digest(p_prev_hash bytea, p_user_hash character, p_chain_pos bigint, p_at timestamp with time zone, p_db_role text, p_operation text, p_phase text, p_ticket uuid, p_params_digest bytea, p_chunk_ids uuid[], p_row_count integer, p_txid xid8)
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256((p_prev_hash || convert_to(concat_ws('|'::text, 'v2', p_user_hash, p_chain_pos, ((EXTRACT(epoch FROM p_at) * (1000000)::numeric))::bigint, p_db_role, p_operation, p_phase, COALESCE((p_ticket)::text, '-'::text), COALESCE(encode(p_params_digest, 'hex'::text), '-'::text), (p_chunk_ids)::text, p_row_count, p_txid), 'UTF8'::name)));

CREATE OR REPLACE FUNCTION pymem.audit_row_digest_v1(p_prev_hash bytea, p_seq bigint, p_at timestamp with time zone, p_db_role text, p_user_hash character, p_operation text, p_chunk_ids uuid[], p_row_count integer, p_txid xid8, p_chain_pos bigint)
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256((p_prev_hash || convert_to(concat_ws('|'::text, p_seq, ((EXTRACT(epoch FROM p_at) * (1000000)::numeric))::bigint, p_db_role, COALESCE(p_user_hash, '-'::bpchar), p_operation, (p_chunk_ids)::text, p_row_count, p_txid, p_chain_pos), 'UTF8'::name)));

CREATE OR REPLACE FUNCTION pymem.audit_row_hash(p_user_hash character, p_chain_pos bigint)
 RETURNS bytea
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_hash bytea;
BEGIN
    SELECT a.row_hash INTO v_hash FROM pymem.audit_log a
     WHERE a.user_hash = p_user_hash AND a.chain_pos = p_chain_pos;
    IF NOT FOUND THEN
        SELECT v.row_hash INTO v_hash FROM pymem.audit_log_v1 v
         WHERE (v.user_hash = p_user_hash OR (v.user_hash IS NULL AND p_user_hash = pymem.no_tenant()))
           AND v.chain_pos = p_chain_pos;
    END IF;
    RETURN v_hash;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_v1_tail(p_user_hash character, OUT chain_pos bigint, OUT row_hash bytea)
 RETURNS record
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF p_user_hash = pymem.no_tenant() THEN
        SELECT v.chain_pos, v.row_hash INTO chain_pos, row_hash FROM pymem.audit_log_v1 v
         WHERE v.user_hash IS NULL ORDER BY v.chain_pos DESC LIMIT 1;
    ELSE
        SELECT v.chain_pos, v.row_hash INTO chain_pos, row_hash FROM pymem.audit_log_v1 v
         WHERE v.user_hash = p_user_hash ORDER BY v.chain_pos DESC LIMIT 1;
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_verify()
 RETURNS TABLE(user_hash character, chain_pos bigint, problem text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_row       pymem.audit_log;
    v_tail      record;
    v_head      record;
    v_chain     char(64);
    v_expect    bigint;
    v_prev_hash bytea;
    v_prev_at   timestamptz;
BEGIN
    FOR v_row IN SELECT a.* FROM pymem.audit_log a ORDER BY a.user_hash, a.chain_pos LOOP
        IF v_chain IS NULL OR v_row.user_hash <> v_chain THEN
            -- A chain that began in v1 links its first v2 row to v1's last.
            v_chain := v_row.user_hash;
            SELECT * INTO v_tail FROM pymem.audit_v1_tail(v_chain);
            v_expect := coalesce(v_tail.chain_pos, 0) + 1;
            v_prev_hash := coalesce(v_tail.row_hash, '\x');
            v_prev_at := '-infinity';
        END IF;
        user_hash := v_row.user_hash;
        chain_pos := v_row.chain_pos;
        IF v_row.chain_pos <> v_expect THEN
            problem := 'missing row(s) before this one (deleted)';
            RETURN NEXT;
        ELSIF v_row.prev_hash <> v_prev_hash THEN
            problem := 'previous hash does not match (a predecessor was altered, or rows were reordered)';
            RETURN NEXT;
        END IF;
        IF v_row.row_hash <> pymem.audit_row_digest(v_row.prev_hash, v_row.user_hash, v_row.chain_pos, v_row.at,
                v_row.db_role, v_row.operation, v_row.phase, v_row.ticket, v_row.params_digest, v_row.chunk_ids,
                v_row.row_count, v_row.txid) THEN
            problem := 'row hash does not match (modified)';
            RETURN NEXT;
        ELSIF v_row.at < v_prev_at THEN
            problem := 'earlier than its predecessor (reordered)';
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
        v_prev_at := v_row.at;
    END LOOP;
    -- A head that disagrees with its chain's last row (see 0005). The join is on
    -- user_hash, so Citus runs it shard by shard; the v1 tail is read here.
    FOR v_head IN
        SELECT h.user_hash, h.chain_pos, h.row_hash, t.last_pos, l.row_hash AS last_hash
          FROM pymem.audit_chain_heads h
          LEFT JOIN LATERAL (SELECT max(a.chain_pos) AS last_pos FROM pymem.audit_log a
                              WHERE a.user_hash = h.user_hash) t ON true
          LEFT JOIN pymem.audit_log l ON l.user_hash = h.user_hash AND l.chain_pos = h.chain_pos
         WHERE t.last_pos IS DISTINCT FROM h.chain_pos OR l.row_hash IS DISTINCT FROM h.row_hash
         ORDER BY h.user_hash
    LOOP
        CONTINUE WHEN v_head.last_pos IS NULL
                  AND v_head.chain_pos = coalesce((SELECT v.chain_pos FROM pymem.audit_v1_tail(v_head.user_hash) v), 0);
        user_hash := v_head.user_hash;
        chain_pos := v_head.chain_pos;
        problem := CASE
            WHEN v_head.last_pos IS NULL THEN 'all rows of the chain are missing (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos < v_head.chain_pos THEN 'rows missing at the end (head says ' || v_head.chain_pos || ')'
            WHEN v_head.last_pos > v_head.chain_pos THEN 'rows beyond the head (head says ' || v_head.chain_pos || ')'
            ELSE 'the last row''s hash differs from the head' END;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT coalesce(p.user_hash, pymem.no_tenant()), p.chain_pos, 'v1: ' || p.problem
                   FROM pymem.audit_verify_v1() p;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.audit_verify_v1()
 RETURNS TABLE(user_hash character, seq bigint, chain_pos bigint, problem text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_row       record;
    v_chain     char(64);
    v_first     boolean := true;
    v_expect    bigint;
    v_prev_hash bytea;
    v_broken    boolean;
BEGIN
    FOR v_row IN
        SELECT a.*, row_number() OVER (PARTITION BY a.user_hash ORDER BY a.seq) AS seq_rank
          FROM pymem.audit_log_v1 a
         ORDER BY a.user_hash NULLS FIRST, a.chain_pos
    LOOP
        IF v_first OR v_row.user_hash IS DISTINCT FROM v_chain THEN
            v_first := false;
            v_chain := v_row.user_hash;
            v_expect := 1;
            v_prev_hash := '\x';
            v_broken := false;
        END IF;
        CONTINUE WHEN v_broken;
        problem := CASE
            WHEN v_row.chain_pos <> v_expect THEN 'missing row(s) before this one (deleted)'
            WHEN v_row.seq_rank <> v_row.chain_pos THEN 'out of order (reordered)'
            WHEN v_row.prev_hash <> v_prev_hash THEN 'previous hash does not match (predecessor altered)'
            WHEN v_row.row_hash <> pymem.audit_row_digest_v1(v_row.prev_hash, v_row.seq, v_row.at, v_row.db_role,
                     v_row.user_hash, v_row.operation, v_row.chunk_ids, v_row.row_count, v_row.txid,
                     v_row.chain_pos) THEN 'row hash does not match (modified)'
        END;
        IF problem IS NOT NULL THEN
            user_hash := v_row.user_hash;
            seq := v_row.seq;
            chain_pos := v_row.chain_pos;
            v_broken := true;
            RETURN NEXT;
        END IF;
        v_expect := v_row.chain_pos + 1;
        v_prev_hash := v_row.row_hash;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF p_aad_version IS DISTINCT FROM 2 THEN
        RAISE EXCEPTION 'pymem: new rows must be sealed with AAD version 2' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.check_filter(p_filter bytea[], p_ends integer[])
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.check_tenant(p_user_hash character)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    -- The raw setting, not current_tenant(): its char(64) cast would cut a longer
    -- value down to a hash the policy then does not match.
    v_context text := current_setting('app.user_hash', true);
BEGIN
    IF p_user_hash IS NULL OR v_context IS NULL OR v_context !~ '^[0-9a-f]{64}$'
       OR v_context <> p_user_hash::text THEN
        RAISE EXCEPTION 'pymem: the tenant argument is not the tenant context of this transaction'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'SET LOCAL app.user_hash in the same transaction (pymem.set_rls_context); '
                         'on Citus, citus.propagate_set_commands must be ''local''';
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.chunks_distributed()
 RETURNS boolean
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_distributed boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
        INTO v_distributed USING 'pymem.memory_chunks'::regclass;
    RETURN v_distributed;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.chunks_truncated()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF TG_TABLE_NAME <> 'memory_chunks' OR pymem.chunks_distributed() THEN
        RAISE EXCEPTION 'pymem: TRUNCATE of a distributed pymem.memory_chunks is refused'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'erase tenants with pymem.erase_tenant, each in its own tenant context';
    END IF;
    PERFORM pymem.audit_append(pymem.no_tenant(), 'truncate', 'write', NULL, NULL, '{}');
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.committed_intent(p_user_hash character, p_ticket uuid)
 RETURNS pymem.audit_log
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_intent pymem.audit_log;
BEGIN
    SELECT a.* INTO v_intent FROM pymem.audit_log a
     WHERE a.user_hash = p_user_hash AND a.ticket = p_ticket AND a.phase = 'intent';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pymem: no read intent with this ticket for this tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'call pymem.read_intent in its own committed transaction first';
    END IF;
    IF v_intent.at < clock_timestamp() - make_interval(secs => (SELECT t.read_intent_ttl_s FROM pymem.tuning t)) THEN
        RAISE EXCEPTION 'pymem: the read intent has expired' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_xact_status(v_intent.txid) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'pymem: the read intent must be committed before the read'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_intent;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.count_direct_write()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.count_keys(OLD.user_hash, ARRAY[OLD.key_id], -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pymem.count_keys(NEW.user_hash, ARRAY[NEW.key_id], 1);
        PERFORM pymem.warn_key_budget(ARRAY[NEW.key_id]);
    END IF;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.count_keys(p_user_hash character, p_key_ids integer[], p_sign integer)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_key record;
BEGIN
    FOR v_key IN SELECT k.key_id, count(*) AS n FROM unnest(p_key_ids) AS k(key_id) GROUP BY k.key_id LOOP
        IF p_sign > 0 THEN
            INSERT INTO pymem.key_stats AS s (key_id, user_hash, live_rows, seals)
            VALUES (v_key.key_id, p_user_hash, v_key.n, 3 * v_key.n)
            ON CONFLICT (key_id, user_hash)
            DO UPDATE SET live_rows = s.live_rows + excluded.live_rows, seals = s.seals + excluded.seals;
        ELSE
            UPDATE pymem.key_stats s SET live_rows = s.live_rows - v_key.n
             WHERE s.user_hash = p_user_hash AND s.key_id = v_key.key_id;
        END IF;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.current_tenant()
 RETURNS character
 LANGUAGE sql
 STABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN (NULLIF(current_setting('app.user_hash'::text, true), ''::text))::character(64);

CREATE OR REPLACE FUNCTION pymem.delete_chunk_ids(p_user_hash character, p_ids uuid[])
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.delete_chunks(p_user_hash character, p_doc_id text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
    PERFORM pymem.count_keys(p_user_hash, v_keys, -1);
    PERFORM pymem.audit_append(p_user_hash, 'delete', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.delete_document(p_user_hash character, p_doc_id text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF p_doc_id IS NULL THEN
        RAISE EXCEPTION 'delete_document: doc id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN pymem.delete_chunks(p_user_hash, p_doc_id);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.embedding_dim()
 RETURNS integer
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN (SELECT a.atttypmod FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = 'pymem.memory_chunks'::regclass AND a.attname = 'embedding');
END
$function$;

CREATE OR REPLACE FUNCTION pymem.erase_tenant(p_user_hash character)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN pymem.delete_chunks(p_user_hash, NULL);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.export_chunks(p_user_hash character, p_ticket uuid, p_key_ids integer[], p_after uuid, p_limit integer)
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
         ORDER BY c.id
         LIMIT p_limit
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'export', 'result', p_ticket, NULL, v_ids);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.export_chunks_v2(p_user_hash character, p_ticket uuid, p_key_ids integer[], p_after uuid, p_limit integer)
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, ref_cipher bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.export_digest(p_key_ids integer[], p_limit integer)
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256(convert_to(concat_ws('|'::text, COALESCE((p_key_ids)::text, '*'::text), p_limit), 'UTF8'::name));

CREATE OR REPLACE FUNCTION pymem.filtered_search_digest(p_query public.vector, p_k integer, p_filter bytea[], p_ends integer[])
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256((((public.vector_send(p_query) || int4send(p_k)) || convert_to(COALESCE((p_ends)::text, '-'::text), 'UTF8'::name)) || sha256(array_send(p_filter))));

CREATE OR REPLACE FUNCTION pymem.get_chunks(p_user_hash character, p_ticket uuid, p_ids uuid[])
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
         ORDER BY c.id
    LOOP
        v_ids := v_ids || id;
        RETURN NEXT;
    END LOOP;
    PERFORM pymem.audit_append(p_user_hash, 'get', 'result', p_ticket, NULL, v_ids);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.get_chunks_v2(p_user_hash character, p_ticket uuid, p_ids uuid[])
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, ref_cipher bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.get_digest(p_ids uuid[])
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256(convert_to(COALESCE((p_ids)::text, '-'::text), 'UTF8'::name));

CREATE OR REPLACE FUNCTION pymem.index_rows(p_user_hash character)
 RETURNS double precision
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.key_usage()
 RETURNS TABLE(key_id integer, live_rows bigint, seals bigint, tenants bigint)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
BEGIN
    FOR key_id, live_rows, seals, tenants IN
        SELECT s.key_id, sum(s.live_rows)::bigint, sum(s.seals)::bigint, count(*) FILTER (WHERE s.live_rows > 0)
          FROM pymem.key_stats s GROUP BY s.key_id ORDER BY s.key_id
    LOOP
        IF seals >= v_warn THEN
            RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it', key_id, seals, v_warn
                USING HINT = 'pymem rotate-key re-seals rows under the active key';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.no_tenant()
 RETURNS character
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN (repeat('0'::text, 64))::character(64);

CREATE OR REPLACE FUNCTION pymem.put_chunks(p_user_hash character, p_ids uuid[], p_doc_ids text[], p_sources text[], p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_key_ids integer[], p_embeddings public.vector[], p_aad_version smallint)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
    PERFORM pymem.count_keys(p_user_hash, p_key_ids, 1);
    PERFORM pymem.warn_key_budget(p_key_ids);
    PERFORM pymem.audit_append(p_user_hash, 'insert', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN v_n;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.quarantine_chunks(p_user_hash character, p_ids uuid[], p_reason text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_row   record;
    v_count integer := 0;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    FOR v_row IN
        SELECT c.id, c.key_id FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
    LOOP
        INSERT INTO pymem.quarantined_chunks (user_hash, chunk_id, key_id, reason)
        VALUES (p_user_hash, v_row.id, v_row.key_id, p_reason) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.quarantined()
 RETURNS TABLE(user_hash character, chunk_id uuid, key_id integer, reason text, at timestamp with time zone)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN QUERY
    SELECT q.user_hash, q.chunk_id, q.key_id, q.reason, q.at FROM pymem.quarantined_chunks q
     ORDER BY q.user_hash, q.chunk_id;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.read_intent(p_user_hash character, p_ticket uuid, p_operation text, p_params_digest bytea)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_ticket IS NULL OR p_operation IS NULL OR p_operation NOT IN ('search', 'get', 'export')
       OR p_params_digest IS NULL OR octet_length(p_params_digest) <> 32 THEN
        RAISE EXCEPTION 'read_intent: needs a ticket, an operation (search, get, export) and a 32-byte digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'intent', p_ticket, p_params_digest, '{}');
END
$function$;

CREATE OR REPLACE FUNCTION pymem.read_result(p_user_hash character, p_ticket uuid, p_operation text, p_ids uuid[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_operation IS DISTINCT FROM 'search' THEN
        RAISE EXCEPTION 'read_result: only searches are served by standbys' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (pymem.committed_intent(p_user_hash, p_ticket)).operation <> p_operation THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One result per ticket: lock the chain first, so two callers cannot both pass.
    PERFORM pymem.audit_lock_chain(p_user_hash);
    IF EXISTS (SELECT 1 FROM pymem.audit_log a WHERE a.user_hash = p_user_hash AND a.ticket = p_ticket
                  AND a.phase = 'result') THEN
        RAISE EXCEPTION 'pymem: this read already has its result row' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'result', p_ticket, NULL, ARRAY(
        SELECT u.id FROM unnest(coalesce(p_ids, '{}')) WITH ORDINALITY AS u(id, n)
         WHERE EXISTS (SELECT 1 FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = u.id)
         ORDER BY u.n));
END
$function$;

CREATE OR REPLACE FUNCTION pymem.redeem_read_intent(p_user_hash character, p_ticket uuid, p_operation text, p_params_digest bytea)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_intent pymem.audit_log := pymem.committed_intent(p_user_hash, p_ticket);
BEGIN
    IF v_intent.operation <> p_operation OR v_intent.params_digest <> p_params_digest THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.register_encryption_key(p_key_id integer)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF p_key_id IS NULL OR p_key_id < 1 THEN
        RAISE EXCEPTION 'register_encryption_key: key id must be a positive integer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pymem.encryption_keys (key_id) VALUES (p_key_id) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.rekey_chunks(p_user_hash character, p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_new_key_id integer, p_aad_version smallint)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_ids      uuid[] := '{}';
    v_old_keys integer[] := '{}';
    v_row      record;
    v_id       uuid;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.check_aad_version(p_aad_version);
    PERFORM pymem.audit_lock_chain(p_user_hash);
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
    PERFORM pymem.count_keys(p_user_hash, v_old_keys, -1);
    PERFORM pymem.count_keys(p_user_hash, array_fill(p_new_key_id, ARRAY[cardinality(v_ids)]), 1);
    PERFORM pymem.warn_key_budget(ARRAY[p_new_key_id]);
    PERFORM pymem.audit_append(p_user_hash, 'update', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN cardinality(v_ids);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.rekey_chunks_v2(p_user_hash character, p_ids uuid[], p_read_key_ids integer[], p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_ref_ciphers bytea[], p_new_key_id integer, p_aad_version smallint)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.search_bucket(p_user_hash character)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT pg_catalog.get_byte(pg_catalog.decode(pg_catalog."right"(p_user_hash::pg_catalog.text, 2), 'hex'), 0)
           OPERATOR(pg_catalog.&) 63
$function$;

CREATE OR REPLACE FUNCTION pymem.search_chunks(p_user_hash character, p_ticket uuid, p_query public.vector, p_k integer)
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.search_chunks_on_standby(p_user_hash character, p_ticket uuid, p_query public.vector, p_k integer)
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pymem: search_chunks_on_standby serves hot standbys; on the primary call search_chunks'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.redeem_read_intent(p_user_hash, p_ticket, 'search', pymem.search_digest(p_query, p_k));
    RETURN QUERY SELECT * FROM pymem.search_rows(p_user_hash, p_query, p_k);
END
$function$;

CREATE OR REPLACE FUNCTION pymem.search_chunks_on_standby_v2(p_user_hash character, p_ticket uuid, p_query public.vector, p_k integer, p_filter bytea[], p_ends integer[])
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision, ref_cipher bytea)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.search_chunks_v2(p_user_hash character, p_ticket uuid, p_query public.vector, p_k integer, p_filter bytea[], p_ends integer[])
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision, ref_cipher bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pymem.search_digest(p_query public.vector, p_k integer)
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO 'pg_catalog', 'pg_temp'
RETURN sha256((public.vector_send(p_query) || int4send(p_k)));

CREATE OR REPLACE FUNCTION pymem.search_graph_rows(p_user_hash character)
 RETURNS double precision
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_index text := 'memory_chunks_embedding_hnsw_' || pymem.search_bucket(p_user_hash);
    v_shard bigint;
BEGIN
    IF pymem.chunks_distributed() THEN
        EXECUTE 'SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)'
            INTO v_shard USING 'pymem.memory_chunks'::regclass, p_user_hash;
        v_index := v_index || '_' || v_shard;
    END IF;
    RETURN (SELECT greatest(c.reltuples, 1) FROM pg_catalog.pg_class c
             WHERE c.oid = to_regclass(format('pymem.%I', v_index)));
END
$function$;

CREATE OR REPLACE FUNCTION pymem.search_rows(p_user_hash character, p_query public.vector, p_k integer)
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN QUERY
        SELECT r.id, r.doc_id, r.source, r.text_cipher, r.meta_cipher, r.emb_cipher, r.key_id, r.aad_version,
               r.embedding, r.distance
          FROM pymem.search_rows_v2(p_user_hash, p_query, p_k, '{}'::bytea[], '{}'::integer[]) r;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.search_rows_v2(p_user_hash character, p_query public.vector, p_k integer, p_filter bytea[], p_ends integer[])
 RETURNS TABLE(id uuid, doc_id text, source text, text_cipher bytea, meta_cipher bytea, emb_cipher bytea, key_id integer, aad_version smallint, embedding public.vector, distance double precision, ref_cipher bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
 SET "hnsw.iterative_scan" TO 'relaxed_order'
 SET "hnsw.ef_search" TO '100'
 SET "hnsw.max_scan_tuples" TO '20000'
 SET "hnsw.scan_mem_multiplier" TO '1'
 SET enable_sort TO 'off'
 SET enable_seqscan TO 'on'
 SET enable_indexscan TO 'on'
 SET enable_bitmapscan TO 'on'
 SET enable_indexonlyscan TO 'on'
 SET max_parallel_workers_per_gather TO '0'
 SET enable_tidscan TO 'on'
 SET enable_nestloop TO 'on'
 SET plan_cache_mode TO 'auto'
AS $function$
DECLARE
    v_filtered  boolean;
    v_exact_max integer;
    v_rows      bigint;
    v_graph     double precision;
    v_ef        integer;
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
    -- 2,000 = 20 x the least ef_search: below it the exact scan is always cheaper.
    IF v_rows > v_exact_max OR (NOT v_filtered AND v_rows > 2000) THEN
        -- A filtered scan sees about k / share candidates before it has k matches;
        -- ef_search covers 8x that (measured at 1M rows with shared topics: 2x gave
        -- recall@10 0.969, 4x 0.976, 8x 0.995 for tenants of 3k-10k rows), at
        -- least 100 (at 40, pgvector's default, whole queries of large tenants
        -- came back empty-handed), at least 1/400 of the graph's rows (0009: at
        -- 1M rows, ef_search 100 on a 93k-row graph left 2 of 40 queries of the
        -- tenant holding 90% of it at recall 0.1 and 0.0), and at most 1000. The
        -- filtered count stops at v_exact_max + 1, a lower bound: the estimate
        -- errs towards a wider search.
        v_graph := pymem.search_graph_rows(p_user_hash);
        v_ef := least(1000, greatest(100, ceil(v_graph / 400), ceil(8 * p_k / least(1.0, v_rows / v_graph))));
    END IF;
    -- The graph when the tenant is too large for the exact scan, or when the scan
    -- would read more than 20 rows per unit of ef_search (0010: measured, the
    -- scan costs about 1 us a row, the graph 12-21 us per unit of ef_search).
    -- No graph (its index dropped for a bulk load): the exact scan.
    IF v_rows > v_exact_max OR (NOT v_filtered AND v_graph IS NOT NULL AND v_rows > 20 * v_ef) THEN
        PERFORM set_config('hnsw.ef_search', v_ef::text, true);  -- local to this call
        -- One statement per bucket graph, its bucket a literal, so the planner
        -- proves that graph's partial index applies. Plain PostgreSQL keeps one
        -- generic plan for each (planned per call, the 63 other graphs' partial
        -- indexes cost 0.3 ms); Citus keeps custom plans (see the exact path).
        IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
        END IF;
        CASE pymem.search_bucket(p_user_hash)

            WHEN 0 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 0
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 1 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 1
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 2 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 2
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 3 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 3
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 4 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 4
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 5 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 5
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 6 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 6
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 7 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 7
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 8 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 8
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 9 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 9
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 10 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 10
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 11 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 11
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 12 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 12
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 13 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 13
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 14 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 14
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 15 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 15
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 16 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 16
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 17 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 17
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 18 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 18
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 19 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 19
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 20 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 20
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 21 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 21
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 22 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 22
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 23 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 23
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 24 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 24
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 25 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 25
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 26 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 26
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 27 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 27
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 28 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 28
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 29 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 29
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 30 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 30
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 31 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 31
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 32 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 32
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 33 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 33
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 34 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 34
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 35 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 35
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 36 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 36
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 37 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 37
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 38 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 38
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 39 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 39
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 40 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 40
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 41 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 41
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 42 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 42
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 43 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 43
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 44 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 44
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 45 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 45
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 46 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 46
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 47 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 47
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 48 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 48
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 49 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 49
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 50 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 50
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 51 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 51
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 52 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 52
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 53 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 53
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 54 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 54
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 55 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 55
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 56 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 56
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 57 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 57
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 58 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 58
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 59 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 59
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 60 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 60
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 61 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 61
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 62 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 62
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
            WHEN 63 THEN
                RETURN QUERY
                    WITH hits AS MATERIALIZED (
                        SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id,
                               c.aad_version, c.embedding, c.embedding OPERATOR(public.<=>) p_query AS distance,
                               c.ref_cipher
                          FROM pymem.memory_chunks c
                         WHERE c.user_hash = p_user_hash
                           AND pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) 63
                           AND (NOT v_filtered OR c.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]])
                           AND (cardinality(p_ends) <= 1 OR pymem.tags_match(c.meta_tags, p_filter, p_ends))
                         ORDER BY c.embedding OPERATOR(public.<=>) p_query
                         LIMIT p_k)
                    SELECT * FROM hits h ORDER BY h.distance + 0;
        END CASE;
    ELSIF v_rows > 0 AND v_filtered THEN
        -- "+ 0": the ORDER BY no longer matches the HNSW operator, so the rows
        -- come from the GIN (or btree) index and the top k are exact. The top k
        -- are chosen among narrow rows (where each one is, its distance) and only
        -- they are read whole: see the header.
        RETURN QUERY
            SELECT c.id, c.doc_id, c.source, c.text_cipher, c.meta_cipher, c.emb_cipher, c.key_id, c.aad_version,
                   c.embedding, t.distance, c.ref_cipher
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                       AND n.meta_tags OPERATOR(pg_catalog.&&) p_filter[1:p_ends[1]]
                       AND (cardinality(p_ends) = 1 OR pymem.tags_match(n.meta_tags, p_filter, p_ends))
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
                   c.embedding, t.distance, c.ref_cipher
              FROM (SELECT n.ctid AS tid, n.embedding OPERATOR(public.<=>) p_query AS distance
                      FROM pymem.memory_chunks n
                     WHERE n.user_hash = p_user_hash
                     ORDER BY (n.embedding OPERATOR(public.<=>) p_query) + 0
                     LIMIT p_k) t
              JOIN pymem.memory_chunks c ON c.ctid = t.tid
             WHERE c.user_hash = p_user_hash
             ORDER BY t.distance;
    END IF;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.tags_match(p_tags bytea[], p_filter bytea[], p_ends integer[])
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
RETURN COALESCE((SELECT bool_and((tags_match.p_tags && (tags_match.p_filter)[(COALESCE((tags_match.p_ends)[(i.i - 1)], 0) + 1):(tags_match.p_ends)[i.i]])) AS bool_and FROM generate_subscripts(tags_match.p_ends, 1) i(i)), true);

CREATE OR REPLACE FUNCTION pymem.tenants_with_keys(p_key_ids integer[])
 RETURNS TABLE(user_hash character, live_rows bigint)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
BEGIN
    RETURN QUERY
    SELECT s.user_hash, sum(s.live_rows)::bigint FROM pymem.key_stats s
     WHERE s.key_id = ANY (p_key_ids) AND s.live_rows > 0
     GROUP BY s.user_hash ORDER BY s.user_hash;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.warn_key_budget(p_key_ids integer[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
    v_key  record;
BEGIN
    IF pymem.chunks_distributed() THEN
        RETURN;
    END IF;
    FOR v_key IN
        SELECT s.key_id, sum(s.seals) AS seals FROM pymem.key_stats s
         WHERE s.key_id = ANY (p_key_ids) GROUP BY s.key_id
    LOOP
        IF v_key.seals >= v_warn THEN
            RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it',
                v_key.key_id, v_key.seals, v_warn
                USING HINT = 'pymem rotate-key re-seals rows under the active key';
        END IF;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION pymem.write_chunks(p_user_hash character, p_upsert boolean, p_ids uuid[], p_doc_ids text[], p_sources text[], p_text_ciphers bytea[], p_meta_ciphers bytea[], p_emb_ciphers bytea[], p_ref_ciphers bytea[], p_tags bytea[], p_key_ids integer[], p_embeddings public.vector[], p_aad_version smallint)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET row_security TO 'on'
AS $function$
DECLARE
    v_n        integer := cardinality(p_ids);
    v_new      uuid[] := '{}';
    v_replaced uuid[] := '{}';
    v_old_keys integer[] := '{}';
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
    IF p_upsert THEN
        FOR v_row IN
            DELETE FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
            RETURNING c.id, c.key_id
        LOOP
            v_replaced := v_replaced || v_row.id;
            v_old_keys := v_old_keys || v_row.key_id;
        END LOOP;
    END IF;
    INSERT INTO pymem.memory_chunks
        (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, meta_tags, key_id,
         embedding, aad_version)
    SELECT u.id, p_user_hash, u.doc_id, u.source, u.text_cipher, u.meta_cipher, u.emb_cipher, u.ref_cipher,
           ARRAY(SELECT substring(u.tags FROM o FOR 16) FROM generate_series(1, octet_length(u.tags), 16) AS o),
           u.key_id, u.embedding, p_aad_version
      FROM unnest(p_ids, p_doc_ids, p_sources, p_text_ciphers, p_meta_ciphers, p_emb_ciphers, p_ref_ciphers,
                  p_tags, p_key_ids, p_embeddings)
           AS u(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, tags, key_id, embedding);
    v_new := ARRAY(SELECT i FROM unnest(p_ids) AS i WHERE NOT i = ANY (v_replaced));
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
$function$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pymem FROM PUBLIC, pymem_app, pymem_maintainer, pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_heads() TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_row_hash(character,bigint) TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_verify() TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.audit_verify_v1() TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.delete_chunk_ids(character,uuid[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.delete_document(character,text) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.embedding_dim() TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.embedding_dim() TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.erase_tenant(character) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.export_chunks(character,uuid,integer[],uuid,integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.export_chunks(character,uuid,integer[],uuid,integer) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.export_chunks_v2(character,uuid,integer[],uuid,integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.export_chunks_v2(character,uuid,integer[],uuid,integer) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.export_digest(integer[],integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.export_digest(integer[],integer) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.filtered_search_digest(public.vector,integer,bytea[],integer[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.get_chunks(character,uuid,uuid[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.get_chunks_v2(character,uuid,uuid[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.get_digest(uuid[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.get_digest(uuid[]) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.key_usage() TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.key_usage() TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.put_chunks(character,uuid[],text[],text[],bytea[],bytea[],bytea[],integer[],public.vector[],smallint) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.quarantine_chunks(character,uuid[],text) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.quarantined() TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.quarantined() TO pymem_auditor;
GRANT EXECUTE ON FUNCTION pymem.read_intent(character,uuid,text,bytea) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.read_intent(character,uuid,text,bytea) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.read_result(character,uuid,text,uuid[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.register_encryption_key(integer) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.rekey_chunks(character,uuid[],integer[],bytea[],bytea[],bytea[],integer,smallint) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.rekey_chunks_v2(character,uuid[],integer[],bytea[],bytea[],bytea[],bytea[],integer,smallint) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.search_chunks(character,uuid,public.vector,integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.search_chunks_on_standby(character,uuid,public.vector,integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.search_chunks_on_standby_v2(character,uuid,public.vector,integer,bytea[],integer[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.search_chunks_v2(character,uuid,public.vector,integer,bytea[],integer[]) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.search_digest(public.vector,integer) TO pymem_app;
GRANT EXECUTE ON FUNCTION pymem.search_digest(public.vector,integer) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.tenants_with_keys(integer[]) TO pymem_maintainer;
GRANT EXECUTE ON FUNCTION pymem.write_chunks(character,boolean,uuid[],text[],text[],bytea[],bytea[],bytea[],bytea[],bytea[],integer[],public.vector[],smallint) TO pymem_app;

COMMENT ON FUNCTION pymem.audit_append(character,text,text,uuid,bytea,uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.audit_direct_write() IS NULL;
COMMENT ON FUNCTION pymem.audit_heads() IS NULL;
COMMENT ON FUNCTION pymem.audit_lock_chain(character) IS NULL;
COMMENT ON FUNCTION pymem.audit_reject_change() IS NULL;
COMMENT ON FUNCTION pymem.audit_row_digest(bytea,character,bigint,timestamp with time zone,text,text,text,uuid,bytea,uuid[],integer,xid8) IS NULL;
COMMENT ON FUNCTION pymem.audit_row_digest_v1(bytea,bigint,timestamp with time zone,text,character,text,uuid[],integer,xid8,bigint) IS NULL;
COMMENT ON FUNCTION pymem.audit_row_hash(character,bigint) IS NULL;
COMMENT ON FUNCTION pymem.audit_v1_tail(character) IS NULL;
COMMENT ON FUNCTION pymem.audit_verify() IS NULL;
COMMENT ON FUNCTION pymem.audit_verify_v1() IS NULL;
COMMENT ON FUNCTION pymem.check_aad_version(smallint) IS NULL;
COMMENT ON FUNCTION pymem.check_filter(bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.check_tenant(character) IS NULL;
COMMENT ON FUNCTION pymem.chunks_distributed() IS NULL;
COMMENT ON FUNCTION pymem.chunks_truncated() IS NULL;
COMMENT ON FUNCTION pymem.committed_intent(character,uuid) IS NULL;
COMMENT ON FUNCTION pymem.count_direct_write() IS NULL;
COMMENT ON FUNCTION pymem.count_keys(character,integer[],integer) IS NULL;
COMMENT ON FUNCTION pymem.current_tenant() IS NULL;
COMMENT ON FUNCTION pymem.delete_chunk_ids(character,uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.delete_chunks(character,text) IS NULL;
COMMENT ON FUNCTION pymem.delete_document(character,text) IS NULL;
COMMENT ON FUNCTION pymem.embedding_dim() IS NULL;
COMMENT ON FUNCTION pymem.erase_tenant(character) IS NULL;
COMMENT ON FUNCTION pymem.export_chunks(character,uuid,integer[],uuid,integer) IS NULL;
COMMENT ON FUNCTION pymem.export_chunks_v2(character,uuid,integer[],uuid,integer) IS NULL;
COMMENT ON FUNCTION pymem.export_digest(integer[],integer) IS NULL;
COMMENT ON FUNCTION pymem.filtered_search_digest(public.vector,integer,bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.get_chunks(character,uuid,uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.get_chunks_v2(character,uuid,uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.get_digest(uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.index_rows(character) IS NULL;
COMMENT ON FUNCTION pymem.key_usage() IS NULL;
COMMENT ON FUNCTION pymem.no_tenant() IS NULL;
COMMENT ON FUNCTION pymem.put_chunks(character,uuid[],text[],text[],bytea[],bytea[],bytea[],integer[],public.vector[],smallint) IS NULL;
COMMENT ON FUNCTION pymem.quarantine_chunks(character,uuid[],text) IS NULL;
COMMENT ON FUNCTION pymem.quarantined() IS NULL;
COMMENT ON FUNCTION pymem.read_intent(character,uuid,text,bytea) IS NULL;
COMMENT ON FUNCTION pymem.read_result(character,uuid,text,uuid[]) IS NULL;
COMMENT ON FUNCTION pymem.redeem_read_intent(character,uuid,text,bytea) IS NULL;
COMMENT ON FUNCTION pymem.register_encryption_key(integer) IS NULL;
COMMENT ON FUNCTION pymem.rekey_chunks(character,uuid[],integer[],bytea[],bytea[],bytea[],integer,smallint) IS NULL;
COMMENT ON FUNCTION pymem.rekey_chunks_v2(character,uuid[],integer[],bytea[],bytea[],bytea[],bytea[],integer,smallint) IS NULL;
COMMENT ON FUNCTION pymem.search_bucket(character) IS NULL;
COMMENT ON FUNCTION pymem.search_chunks(character,uuid,public.vector,integer) IS NULL;
COMMENT ON FUNCTION pymem.search_chunks_on_standby(character,uuid,public.vector,integer) IS NULL;
COMMENT ON FUNCTION pymem.search_chunks_on_standby_v2(character,uuid,public.vector,integer,bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.search_chunks_v2(character,uuid,public.vector,integer,bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.search_digest(public.vector,integer) IS NULL;
COMMENT ON FUNCTION pymem.search_graph_rows(character) IS NULL;
COMMENT ON FUNCTION pymem.search_rows(character,public.vector,integer) IS NULL;
COMMENT ON FUNCTION pymem.search_rows_v2(character,public.vector,integer,bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.tags_match(bytea[],bytea[],integer[]) IS NULL;
COMMENT ON FUNCTION pymem.tenants_with_keys(integer[]) IS NULL;
COMMENT ON FUNCTION pymem.warn_key_budget(integer[]) IS NULL;
COMMENT ON FUNCTION pymem.write_chunks(character,boolean,uuid[],text[],text[],bytea[],bytea[],bytea[],bytea[],bytea[],integer[],public.vector[],smallint) IS NULL;

RESET ROLE;
