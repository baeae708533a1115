-- Encryption-key bookkeeping: registered key ids, live rows and seals per key and
-- tenant (pymem.key_stats), the AES-GCM nonce-budget warning, and the quarantine
-- of rows a rotation could not open.
--
-- key_stats has a row per (key, tenant) on purpose: writers of one tenant already
-- queue on that tenant's chain head, so a per-tenant row adds no contention where
-- one row per key would serialise every writer. The API functions keep it
-- set-wise per call; a row trigger keeps it for anyone else's direct DML.

-- Rows may only name a registered key id, so no tenant can plant a row under an
-- id no key ring holds.
CREATE OR REPLACE FUNCTION pymem.register_encryption_key(p_key_id integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF p_key_id IS NULL OR p_key_id < 1 THEN
        RAISE EXCEPTION 'register_encryption_key: key id must be a positive integer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pymem.encryption_keys (key_id) VALUES (p_key_id) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION pymem.register_encryption_key(integer) IS
    'Allows rows sealed under an AES key id (pymem register-key); true when it was new.';

-- p_sign = 1: rows written (live rows, and the fields each sealed: text, meta,
-- emb, and ref when the row has a caller id; p_seals has one count per row);
-- p_sign = -1: rows removed (live rows only; p_seals unused). One statement per
-- distinct key, each on the tenant's key_stats row.
-- The fields a row seals: text, meta and emb, and ref when it has a caller id.
CREATE OR REPLACE FUNCTION pymem.seals_of(p_ref_cipher bytea) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN 3 + (p_ref_cipher IS NOT NULL)::integer;
COMMENT ON FUNCTION pymem.seals_of(bytea) IS
    'How many fields a row seals: 3 (text, meta, emb), or 4 with a caller id (ref).';

CREATE OR REPLACE FUNCTION pymem.count_keys(p_user_hash char(64), p_key_ids integer[], p_seals integer[],
                                            p_sign integer) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_key record;
BEGIN
    FOR v_key IN
        SELECT k.key_id, count(*) AS n, coalesce(sum(k.seals), 0) AS seals
          FROM unnest(p_key_ids, coalesce(p_seals, '{}')) AS k(key_id, seals)
         WHERE k.key_id IS NOT NULL GROUP BY k.key_id
    LOOP
        IF p_sign > 0 THEN
            INSERT INTO pymem.key_stats AS s (key_id, user_hash, live_rows, seals)
            VALUES (v_key.key_id, p_user_hash, v_key.n, v_key.seals)
            ON CONFLICT (key_id, user_hash)
            DO UPDATE SET live_rows = s.live_rows + excluded.live_rows, seals = s.seals + excluded.seals;
        ELSE
            UPDATE pymem.key_stats s SET live_rows = s.live_rows - v_key.n
             WHERE s.user_hash = p_user_hash AND s.key_id = v_key.key_id;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pymem.count_keys(char, integer[], integer[], integer) IS
    'Counts a tenant''s rows written (+1, with the fields each sealed) or removed (-1) under each key in '
    'pymem.key_stats.';

CREATE OR REPLACE FUNCTION pymem.warn_seals(p_key_id integer, p_seals bigint, p_threshold bigint) RETURNS void
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_seals < p_threshold THEN
        RETURN;
    ELSIF p_key_id > 0 THEN
        RAISE WARNING 'pymem: key id % has sealed % fields (warning threshold %): rotate it', p_key_id, p_seals,
            p_threshold USING HINT = 'pymem rotate-key moves its rows under their tenants'' data keys';
    ELSE
        RAISE WARNING 'pymem: a tenant data key (version %) has sealed % fields (warning threshold %): rotate it',
            -p_key_id, p_seals, p_threshold
            USING HINT = 'pymem rotate-key --tenant <user_hash> --new-data-key (pymem.key_stats names the tenant)';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.warn_seals(integer, bigint, bigint) IS
    'Raises the nonce-budget WARNING for a ring key (> 0) or a tenant data key version (< 0) at the threshold.';

-- The warning needs every tenant's count: only where that is a local query. On
-- Citus it would be a cross-shard query on every write, so there it is raised
-- by pymem.key_usage() (pymem key-usage, rotate-key) instead.
CREATE OR REPLACE FUNCTION pymem.warn_key_budget(p_key_ids integer[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
    v_key  record;
BEGIN
    IF pymem.chunks_distributed() THEN
        RETURN;
    END IF;
    -- A key of the ring (key_id > 0) seals for every tenant; a tenant data key
    -- (key_id < 0, 0019) for its tenant alone: its budget is its own.
    FOR v_key IN
        SELECT s.key_id, sum(s.seals)::bigint AS seals FROM pymem.key_stats s
         WHERE s.key_id = ANY (p_key_ids) AND s.key_id > 0 GROUP BY s.key_id
        UNION ALL
        SELECT s.key_id, s.seals FROM pymem.key_stats s
         WHERE s.key_id = ANY (p_key_ids) AND s.key_id < 0 AND s.user_hash = pymem.current_tenant()
    LOOP
        PERFORM pymem.warn_seals(v_key.key_id, v_key.seals, v_warn);
    END LOOP;
END
$$;
COMMENT ON FUNCTION pymem.warn_key_budget(integer[]) IS
    'Raises a WARNING for each key that has sealed pymem.tuning.key_seal_warn_threshold fields '
    '(AES-GCM random-nonce budget); plain PostgreSQL only.';

CREATE OR REPLACE FUNCTION pymem.count_direct_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pymem.count_keys(OLD.user_hash, ARRAY[OLD.key_id], NULL, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pymem.count_keys(NEW.user_hash, ARRAY[NEW.key_id], ARRAY[pymem.seals_of(NEW.ref_cipher)], 1);
        PERFORM pymem.warn_key_budget(ARRAY[NEW.key_id]);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pymem.count_direct_write() IS
    'Trigger: keeps pymem.key_stats for chunk rows written by anyone but pymem_owner.';

-- On a shard, the table's name is memory_chunks_<shard id>: refused there too.
CREATE OR REPLACE FUNCTION pymem.chunks_truncated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'memory_chunks' OR pymem.chunks_distributed() THEN
        RAISE EXCEPTION 'pymem: TRUNCATE of a distributed pymem.memory_chunks is refused'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'erase tenants with pymem.erase_tenant, each in its own tenant context';
    END IF;
    PERFORM pymem.audit_append(pymem.no_tenant(), 'truncate', 'write', NULL, NULL, '{}');
    -- And in every tenant's chain, in its order: a verifier of rows (pymem.freshness)
    -- then knows which of the tenant's writes the TRUNCATE removed (0016).
    PERFORM pymem.audit_append(h.user_hash, 'truncate', 'write', NULL, NULL, '{}')
       FROM pymem.audit_chain_heads h WHERE h.user_hash <> pymem.no_tenant();
    UPDATE pymem.key_stats SET live_rows = 0 WHERE live_rows <> 0;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pymem.chunks_truncated() IS
    'Trigger: audits a TRUNCATE of memory_chunks and zeroes the live counts; refuses it where the table '
    'is distributed (the audit row and the reset would have to reach every shard from a shard''s trigger).';

CREATE OR REPLACE FUNCTION pymem.key_usage()
    RETURNS TABLE (key_id integer, live_rows bigint, seals bigint, tenants bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_warn bigint := (SELECT t.key_seal_warn_threshold FROM pymem.tuning t);
BEGIN
    FOR key_id, live_rows, seals, tenants IN
        -- A tenant data key version (key_id < 0) is one key per tenant: its seals are
        -- those of the tenant's key that sealed the most.
        SELECT s.key_id, sum(s.live_rows)::bigint,
               (CASE WHEN s.key_id > 0 THEN sum(s.seals) ELSE max(s.seals) END)::bigint,
               count(*) FILTER (WHERE s.live_rows > 0)
          FROM pymem.key_stats s GROUP BY s.key_id ORDER BY s.key_id
    LOOP
        PERFORM pymem.warn_seals(key_id, seals, v_warn);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pymem.key_usage() IS
    'Per key id: live rows, fields sealed (for a tenant data key version, the most by one tenant''s key), '
    'tenants with live rows; warns on keys past their seal budget (pymem key-usage).';

-- Hashes and counts only: the rotator then works tenant by tenant under the
-- ordinary tenant context, exactly like the app, so the policy stays the one
-- boundary.
CREATE OR REPLACE FUNCTION pymem.tenants_with_keys(p_key_ids integer[])
    RETURNS TABLE (user_hash char(64), live_rows bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT s.user_hash, sum(s.live_rows)::bigint FROM pymem.key_stats s
     WHERE s.key_id = ANY (p_key_ids) AND s.live_rows > 0
     GROUP BY s.user_hash ORDER BY s.user_hash;
END
$$;
COMMENT ON FUNCTION pymem.tenants_with_keys(integer[]) IS
    'Tenants (hashes) that still hold live rows under any of these key ids, with their counts (pymem rotate-key).';

-- Rows a rotation could not open, so that it can finish everything else.
-- Idempotent: a row already quarantined keeps its first record.
CREATE OR REPLACE FUNCTION pymem.quarantine_chunks(p_user_hash char(64), p_ids uuid[], p_reason text)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_row   record;
    v_count integer := 0;
    v_ids   uuid[] := '{}';
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    FOR v_row IN
        SELECT c.id, c.key_id FROM pymem.memory_chunks c WHERE c.user_hash = p_user_hash AND c.id = ANY (p_ids)
    LOOP
        INSERT INTO pymem.quarantined_chunks (user_hash, chunk_id, key_id, reason)
        VALUES (p_user_hash, v_row.id, v_row.key_id, p_reason) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            v_count := v_count + 1;
            v_ids := v_ids || v_row.id;
        END IF;
    END LOOP;
    -- In the tenant's chain, like every other change a maintainer makes to it.
    PERFORM pymem.audit_append(p_user_hash, 'quarantine', 'write', NULL, NULL,
                               ARRAY(SELECT i FROM unnest(v_ids) AS i ORDER BY i));
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION pymem.quarantine_chunks(char, uuid[], text) IS
    'Records the tenant''s rows among the ids (others are ignored) as not re-sealable, and the ones that were '
    'new in the tenant''s audit chain (''quarantine''); returns how many were new.';

CREATE OR REPLACE FUNCTION pymem.quarantined()
    RETURNS TABLE (user_hash char(64), chunk_id uuid, key_id integer, reason text, at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT q.user_hash, q.chunk_id, q.key_id, q.reason, q.at FROM pymem.quarantined_chunks q
     ORDER BY q.user_hash, q.chunk_id;
END
$$;
COMMENT ON FUNCTION pymem.quarantined() IS 'Every quarantined row: tenant, id, key id, reason, time.';
