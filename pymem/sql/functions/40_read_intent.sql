-- Durable reads. A read needs a committed intent naming its parameters:
--
--   1. read_intent(tenant, ticket, operation, digest of the parameters), in its
--      own transaction, committed;
--   2. the read (search_chunks_v2, get_chunks_v2, export_chunks_v2) with the same
--      ticket and parameters: it redeems the intent, then appends a 'result' row
--      naming the ids it returned.
--
-- The intent is in the tenant's chain before any row is returned, so ROLLBACK, a
-- savepoint, a disconnect or a client crash cannot erase the trace of a read.
-- The digest functions are the one definition of "the same read parameters".

CREATE OR REPLACE FUNCTION pymem.search_digest(p_query public.vector, p_k integer) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(public.vector_send(p_query) || int4send(p_k));
COMMENT ON FUNCTION pymem.search_digest(public.vector, integer) IS
    'The read-intent digest of an unfiltered search: sha256(vector_send(query) || int4send(k)).';

CREATE OR REPLACE FUNCTION pymem.filtered_search_digest(p_query public.vector, p_k integer, p_filter bytea[],
                                                        p_ends integer[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(public.vector_send(p_query) || int4send(p_k)
                  || convert_to(coalesce(p_ends::text, '-'), 'UTF8') || sha256(array_send(p_filter)));
COMMENT ON FUNCTION pymem.filtered_search_digest(public.vector, integer, bytea[], integer[]) IS
    'The read-intent digest of a search_chunks_v2 call: query, k, and the filter''s tags and clause ends.';

CREATE OR REPLACE FUNCTION pymem.get_digest(p_ids uuid[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to(coalesce(p_ids::text, '-'), 'UTF8'));
COMMENT ON FUNCTION pymem.get_digest(uuid[]) IS 'The read-intent digest of a get by ids.';

-- An export intent covers every page of the same export (same keys, same page
-- size), so one transaction can page through a tenant's rows.
CREATE OR REPLACE FUNCTION pymem.export_digest(p_key_ids integer[], p_limit integer) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to(concat_ws('|', coalesce(p_key_ids::text, '*'), p_limit), 'UTF8'));
COMMENT ON FUNCTION pymem.export_digest(integer[], integer) IS
    'The read-intent digest of an export: its key ids and page size (every page of one export).';

-- Revision 0022's reads. A search names its time window and (hybrid) its terms; an
-- export its window and which rows (live, all, expired).
CREATE OR REPLACE FUNCTION pymem.search_digest_v3(p_query public.vector, p_k integer, p_filter bytea[],
                                                  p_ends integer[], p_window timestamptz[], p_terms bytea[])
    RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to('search_v3', 'UTF8') || pymem.filtered_search_digest(p_query, p_k, p_filter, p_ends)
                  || coalesce(sha256(array_send(p_window)), '\x00'::bytea)
                  || coalesce(sha256(array_send(p_terms)), '\x00'::bytea));
COMMENT ON FUNCTION pymem.search_digest_v3(public.vector, integer, bytea[], integer[], timestamptz[], bytea[]) IS
    'The read-intent digest of a search_chunks_v3 call: query, k, filter, time window and term tags (or none).';

CREATE OR REPLACE FUNCTION pymem.export_digest_v3(p_key_ids integer[], p_limit integer, p_window timestamptz[],
                                                  p_rows text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN sha256(convert_to('export_v3', 'UTF8') || pymem.export_digest(p_key_ids, p_limit)
                  || coalesce(sha256(array_send(p_window)), '\x00'::bytea)
                  || convert_to(coalesce(p_rows, '-'), 'UTF8'));
COMMENT ON FUNCTION pymem.export_digest_v3(integer[], integer, timestamptz[], text) IS
    'The read-intent digest of an export_chunks_v3 call: key ids, page size, time window, which rows.';

-- What the audit log keeps of a read's parameters: their digest under the
-- tenant's read-digest key (set by enter_tenant, derived from the tenant's proof),
-- in the hash-of-hash form of context_mac. Equal parameters of one tenant give
-- equal digests; a guess cannot be checked without the key, and two tenants'
-- digests of the same query are unrelated.
CREATE OR REPLACE FUNCTION pymem.keyed_digest(p_digest bytea) RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key text := current_setting('app.read_digest_key', true);
BEGIN
    IF v_key IS NULL OR v_key !~ '^[0-9a-f]{64}$' OR p_digest IS NULL THEN
        RAISE EXCEPTION 'pymem: no read-digest key in this transaction' USING ERRCODE = 'insufficient_privilege',
            HINT = 'a tenant transaction starts with pymem.enter_tenant';
    END IF;
    RETURN sha256(decode(v_key, 'hex') || sha256(decode(v_key, 'hex') || p_digest));
END
$$;
COMMENT ON FUNCTION pymem.keyed_digest(bytea) IS
    'A read''s parameter digest under the tenant''s read-digest key: what the audit log keeps.';

CREATE OR REPLACE FUNCTION pymem.read_intent(p_user_hash char(64), p_ticket uuid, p_operation text,
                                             p_params_digest bytea)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_ticket IS NULL OR p_operation IS NULL OR p_operation NOT IN ('search', 'get', 'export')
       OR p_params_digest IS NULL OR octet_length(p_params_digest) <> 32 THEN
        RAISE EXCEPTION 'read_intent: needs a ticket, an operation (search, get, export) and a 32-byte digest'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'intent', p_ticket, pymem.keyed_digest(p_params_digest),
                               '{}');
END
$$;
COMMENT ON FUNCTION pymem.read_intent(char, uuid, text, bytea) IS
    'Appends a read intent (ticket, operation, parameter digest under the tenant''s read-digest key) to the '
    'tenant''s audit chain. '
    'Commit it before the read: reads refuse an intent that is not committed.';

-- pg_xact_status() of the intent's top-level transaction is 'in progress' when
-- it was written in this transaction (savepoints included).
CREATE OR REPLACE FUNCTION pymem.committed_intent(p_user_hash char(64), p_ticket uuid) RETURNS pymem.audit_log
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
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
$$;
COMMENT ON FUNCTION pymem.committed_intent(char, uuid) IS
    'The tenant''s intent with this ticket, committed and younger than pymem.tuning.read_intent_ttl_s, '
    'or insufficient_privilege.';

CREATE OR REPLACE FUNCTION pymem.redeem_read_intent(p_user_hash char(64), p_ticket uuid, p_operation text,
                                                    p_params_digest bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_intent pymem.audit_log := pymem.committed_intent(p_user_hash, p_ticket);
BEGIN
    IF v_intent.operation <> p_operation OR v_intent.params_digest <> pymem.keyed_digest(p_params_digest) THEN
        RAISE EXCEPTION 'pymem: the read does not match its intent'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.redeem_read_intent(char, uuid, text, bytea) IS
    'Raises insufficient_privilege unless the ticket is a committed, unexpired intent of the tenant for '
    'exactly this operation and these parameters.';

-- A search served by a hot standby cannot write its result row there: the
-- client reports the ids it received, on the primary. Only ids of the tenant's
-- rows are kept. A result row thus proves what the client says it received;
-- the intent is what proves the read happened.
CREATE OR REPLACE FUNCTION pymem.read_result(p_user_hash char(64), p_ticket uuid, p_operation text, p_ids uuid[])
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
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
    -- A search returns at most 1000 rows, each once: more, or an id twice, is not
    -- a result (and would grow the undeletable log at the caller's will).
    IF cardinality(p_ids) > 1000 OR (SELECT count(DISTINCT i) <> count(*) FROM unnest(p_ids) AS i) THEN
        RAISE EXCEPTION 'read_result: at most 1000 ids, each once' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pymem.audit_append(p_user_hash, p_operation, 'result', p_ticket, NULL, ARRAY(
        SELECT u.id FROM unnest(coalesce(p_ids, '{}')) WITH ORDINALITY AS u(id, n)
         WHERE EXISTS (SELECT 1 FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = u.id)
         ORDER BY u.n));
END
$$;
COMMENT ON FUNCTION pymem.read_result(char, uuid, text, uuid[]) IS
    'Appends, on the primary, the result row of a search a standby served: the ids returned, in order, '
    'once per ticket, under a committed search intent.';
