-- Tenant data keys (revision 0019): envelope encryption. A tenant's rows are sealed
-- under its current data key; the database holds each data key only wrapped by a
-- root key it never sees (pymem.root_keys in the app: a KMS, an HSM, or the
-- environment), bound to the tenant and the version, and memory_chunks.key_id names
-- it as -version. Creating, unwrapping (loading), re-wrapping and destroying a data
-- key are each recorded in the tenant's audit chain.
--
-- Lock order, as for every writer: the tenant's chain head first, then its rows.

-- A data key's version where an audit row names ids: the UUID whose 128-bit value is the
-- version (key_create and key_destroy rows name theirs; pymem.root_rotation reads them).
CREATE OR REPLACE FUNCTION pymem.data_key_event_id(p_version integer) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN lpad(to_hex(p_version), 32, '0')::uuid;
COMMENT ON FUNCTION pymem.data_key_event_id(integer) IS
    'The UUID with the value of a data key version, as key_create and key_destroy audit rows name it.';

-- The tenant's data keys, oldest first; a destroyed one with no wrapped bytes. Its
-- caller is about to unwrap them: recorded as a 'key_unwrap'.
CREATE OR REPLACE FUNCTION pymem.data_keys_of(p_user_hash char(64))
    RETURNS TABLE (version integer, root_key text, wrapped bytea, current boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.audit_append(p_user_hash, 'key_unwrap', 'write', NULL, NULL, '{}');
    RETURN QUERY
    SELECT k.version, k.root_key, k.wrapped, (k.retired_at IS NULL AND k.destroyed_at IS NULL)
      FROM pymem.data_keys k WHERE k.user_hash = p_user_hash ORDER BY k.version;
END
$$;
COMMENT ON FUNCTION pymem.data_keys_of(char) IS
    'The tenant''s data keys (version, root key, wrapped bytes, whether it is current; destroyed ones have no '
    'wrapped bytes), oldest first; recorded in its chain as a ''key_unwrap''.';

-- Which of the tenant's data keys are live, in the transaction of a read: a process
-- whose cache still holds a key destroyed since (an erasure by another process) or
-- lacks a newer one loads the keys again before opening what the read returned.
CREATE OR REPLACE FUNCTION pymem.live_data_keys(p_user_hash char(64)) RETURNS integer[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_live integer[];
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    SELECT array_agg(k.version ORDER BY k.version) INTO v_live FROM pymem.data_keys k
     WHERE k.user_hash = p_user_hash AND k.destroyed_at IS NULL;
    RETURN coalesce(v_live, '{}');
END
$$;
COMMENT ON FUNCTION pymem.live_data_keys(char) IS
    'The versions of the tenant''s data keys that are not destroyed (read beside every read''s rows).';

-- live_data_keys with each key's identity: the sha256 of its wrapped bytes. A process
-- that cached a key unwrapped from other bytes loads the tenant's keys again, so a
-- destroyed key's row put back as live under its version, with other bytes, is never
-- taken for the key the process still holds (0019 compared versions only).
-- live_data_keys stays for the apps of 0019 during a rolling upgrade.
CREATE OR REPLACE FUNCTION pymem.live_data_key_digests(p_user_hash char(64))
    RETURNS TABLE (version integer, wrapped_sha256 bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    RETURN QUERY
    SELECT k.version, sha256(k.wrapped) FROM pymem.data_keys k
     WHERE k.user_hash = p_user_hash AND k.destroyed_at IS NULL ORDER BY k.version;
END
$$;
COMMENT ON FUNCTION pymem.live_data_key_digests(char) IS
    'The tenant''s data keys that are not destroyed, each with the sha256 of its wrapped bytes (read beside '
    'every read''s rows).';

-- The version is the caller's because the wrapped bytes are bound to it. Without
-- p_replace, a tenant that has a current key already keeps it and gets it back
-- (two processes that made a first key at once both use the one that was stored).
CREATE OR REPLACE FUNCTION pymem.create_data_key(p_user_hash char(64), p_version integer, p_root_key text,
                                                 p_wrapped bytea, p_replace boolean)
    RETURNS TABLE (version integer, root_key text, wrapped bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_next integer;
    v_now  timestamptz := now();
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    IF p_version IS NULL OR p_root_key IS NULL OR p_wrapped IS NULL OR p_replace IS NULL THEN
        RAISE EXCEPTION 'create_data_key: no argument may be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- memory_chunks.key_id names a data key as -version and may only name a registered id:
    -- 0019 registered -1 to -1000, so this function writes no table but the tenant's own
    -- (Citus runs it on the tenant's worker).
    IF p_version > 1000 THEN
        RAISE EXCEPTION 'create_data_key: the tenant''s data key was made 1,000 times'
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'register more versions in pymem.encryption_keys (-1001 and down) as the owner';
    END IF;
    PERFORM pymem.audit_lock_chain(p_user_hash);
    IF NOT p_replace THEN
        RETURN QUERY
        SELECT k.version, k.root_key, k.wrapped FROM pymem.data_keys k
         WHERE k.user_hash = p_user_hash AND k.retired_at IS NULL AND k.destroyed_at IS NULL;
        IF FOUND THEN  -- the caller unwraps the one stored: on record like data_keys_of
            PERFORM pymem.audit_append(p_user_hash, 'key_unwrap', 'write', NULL, NULL, '{}');
            RETURN;
        END IF;
    END IF;
    PERFORM pymem.check_root_key_in_use(p_root_key);
    SELECT coalesce(max(k.version), 0) + 1 INTO v_next FROM pymem.data_keys k WHERE k.user_hash = p_user_hash;
    IF p_version <> v_next THEN
        RAISE EXCEPTION 'create_data_key: the tenant''s next data key version is %, not %', v_next, p_version
            USING ERRCODE = 'serialization_failure', HINT = 'another process changed the tenant''s keys: load them again';
    END IF;
    UPDATE pymem.data_keys k SET retired_at = v_now
     WHERE k.user_hash = p_user_hash AND k.retired_at IS NULL AND k.destroyed_at IS NULL;
    -- Every value given, none computed in the statement: Citus delegates this call to the
    -- tenant's worker and runs there only statements whose tenant it can read off them.
    INSERT INTO pymem.data_keys (user_hash, version, root_key, wrapped, created_at, wrapped_at)
    VALUES (p_user_hash, p_version, p_root_key, p_wrapped, v_now, v_now);
    PERFORM pymem.audit_append(p_user_hash, 'key_create', 'write', NULL, NULL,
                               ARRAY[pymem.data_key_event_id(p_version)]);
    RETURN QUERY SELECT p_version, p_root_key, p_wrapped;
END
$$;
COMMENT ON FUNCTION pymem.create_data_key(char, integer, text, bytea, boolean) IS
    'Stores a new wrapped data key of the tenant as its current one (p_replace: retiring the current one; '
    'without it, a current one is returned instead); recorded as a ''key_create''.';

-- Internal, for every writer, after it locked the chain head: a data key the rows
-- name must be one of the tenant's and not destroyed. A process whose cached keys
-- are older than an erasure (or a restore) would otherwise write rows no key opens.
CREATE OR REPLACE FUNCTION pymem.check_data_keys(p_user_hash char(64), p_key_ids integer[]) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_wanted integer[] := ARRAY(SELECT DISTINCT -k FROM unnest(p_key_ids) AS k WHERE k < 0);
    v_live   bigint;
BEGIN
    IF cardinality(v_wanted) = 0 THEN
        RETURN;
    END IF;
    SELECT count(*) INTO v_live FROM pymem.data_keys d
     WHERE d.user_hash = p_user_hash AND d.version = ANY (v_wanted) AND d.destroyed_at IS NULL;
    IF v_live <> cardinality(v_wanted) THEN
        RAISE EXCEPTION 'pymem: rows name a data key the tenant does not have (destroyed, or never made)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'load the tenant''s data keys again (pymem.data_keys_of)';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_data_keys(char, integer[]) IS
    'Raises object_not_in_prerequisite_state unless every data key id (< 0) among p_key_ids is a live data key '
    'of the tenant.';

-- Internal: a retired root key wraps nothing new (a process still on the old root
-- during a rolling change, or one that wants a tenant's data lost when it is destroyed).
CREATE OR REPLACE FUNCTION pymem.check_root_key_in_use(p_root_key text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pymem.root_keys r WHERE r.root_key = p_root_key AND r.retired_at IS NOT NULL) THEN
        RAISE EXCEPTION 'pymem: this root key is retired: nothing new is wrapped under it'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'configure the current root key (pymem root-keys lists them)';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_root_key_in_use(text) IS
    'Raises object_not_in_prerequisite_state if the root key is retired.';

-- Internal: erase_tenant's second half. The rows stay, without their key bytes: a
-- version is never used twice, and a row sealed under a destroyed key says so.
CREATE OR REPLACE FUNCTION pymem.destroy_data_keys(p_user_hash char(64)) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_versions integer[] := '{}';
    v_known    bigint;
    v_now      timestamptz := now();
    v_row      record;
BEGIN
    PERFORM pymem.check_tenant(p_user_hash);
    PERFORM pymem.audit_lock_chain(p_user_hash);
    FOR v_row IN
        UPDATE pymem.data_keys k SET wrapped = NULL, root_key = NULL, destroyed_at = v_now
         WHERE k.user_hash = p_user_hash AND k.destroyed_at IS NULL
        RETURNING k.version
    LOOP
        v_versions := v_versions || v_row.version;
    END LOOP;
    -- A tenant with no data key yet (rows only under ring keys, written before 0019)
    -- gets a destroyed one too: the erasure is then on record where the key rotator
    -- looks, and rows of it put back are quarantined, not re-sealed under a new key.
    -- (Each statement names its tenant and its values: Citus delegates this call to the
    -- tenant's worker and runs only such statements there.)
    SELECT count(*) INTO v_known FROM pymem.data_keys k WHERE k.user_hash = p_user_hash;
    IF v_known = 0 THEN
        INSERT INTO pymem.data_keys (user_hash, version, created_at, wrapped_at, destroyed_at)
        VALUES (p_user_hash, 1, v_now, v_now, v_now);
        v_versions := ARRAY[1];
    END IF;
    IF cardinality(v_versions) > 0 THEN
        -- The versions, in the chain: a key rotator that verifies the chain against a
        -- signed checkpoint then knows them for destroyed, whatever the table says later.
        PERFORM pymem.audit_append(p_user_hash, 'key_destroy', 'write', NULL, NULL,
                                   ARRAY(SELECT pymem.data_key_event_id(v) FROM unnest(v_versions) AS v ORDER BY v));
    END IF;
    RETURN cardinality(v_versions);
END
$$;
COMMENT ON FUNCTION pymem.destroy_data_keys(char) IS
    'Destroys the tenant''s wrapped data keys (their rows stay, empty); recorded as a ''key_destroy''.';

-- Root rotation, for the maintainer: wrapped bytes only, which open under no key the
-- database has. Ordered, so that a run that stopped resumes where it was.
CREATE OR REPLACE FUNCTION pymem.data_keys_to_rewrap(p_root_key text, p_limit integer)
    RETURNS TABLE (user_hash char(64), version integer, root_key text, wrapped bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT k.user_hash, k.version, k.root_key, k.wrapped FROM pymem.data_keys k
     WHERE k.root_key IS NOT NULL AND k.root_key <> p_root_key
     ORDER BY k.user_hash, k.version LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION pymem.data_keys_to_rewrap(text, integer) IS
    'Up to p_limit live data keys wrapped under another root key than p_root_key (pymem rotate-root-key).';

-- A key is only re-wrapped while it is still under the root it was read under, so
-- a re-run or a concurrent rotator never writes it twice. The database cannot tell
-- a good wrap from junk, so each needs its tenant's proof, which only the keys make:
-- a maintainer login without them cannot overwrite a tenant's key (A10's rule).
CREATE OR REPLACE FUNCTION pymem.rewrap_data_keys(p_user_hashes char(64)[], p_proofs bytea[], p_versions integer[],
                                                  p_old_root_keys text[], p_new_root_key text, p_wrapped bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_row   record;
    v_count integer := 0;
    v_old   text[] := '{}';
    v_now   timestamptz := now();
BEGIN
    IF p_new_root_key IS NULL OR cardinality(p_versions) IS DISTINCT FROM cardinality(p_user_hashes)
       OR cardinality(p_proofs) IS DISTINCT FROM cardinality(p_user_hashes)
       OR cardinality(p_old_root_keys) IS DISTINCT FROM cardinality(p_user_hashes)
       OR cardinality(p_wrapped) IS DISTINCT FROM cardinality(p_user_hashes) THEN
        RAISE EXCEPTION 'rewrap_data_keys: argument arrays differ in length, or no new root key'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_user_hashes, p_proofs) AS u(user_hash, proof)
                WHERE u.proof IS NULL OR NOT EXISTS (
                      SELECT 1 FROM pymem.tenant_proofs t
                       WHERE t.user_hash = u.user_hash AND t.proof_digest = sha256(u.proof))) THEN
        RAISE EXCEPTION 'pymem: wrong tenant proof' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pymem.check_root_key_in_use(p_new_root_key);
    FOR v_row IN
        SELECT u.* FROM unnest(p_user_hashes, p_versions, p_old_root_keys, p_wrapped)
                        AS u(user_hash, version, old_root, wrapped)
    LOOP
        PERFORM pymem.audit_lock_chain(v_row.user_hash);
        UPDATE pymem.data_keys k SET root_key = p_new_root_key, wrapped = v_row.wrapped, wrapped_at = v_now
         WHERE k.user_hash = v_row.user_hash AND k.version = v_row.version AND k.root_key = v_row.old_root;
        IF FOUND THEN
            v_count := v_count + 1;
            v_old := v_old || v_row.old_root;
            PERFORM pymem.audit_append(v_row.user_hash, 'key_rewrap', 'write', NULL, NULL, '{}');
        END IF;
    END LOOP;
    -- The time as a value, not now(): Citus refuses a function in ON CONFLICT DO UPDATE
    -- on the reference table root_keys is.
    INSERT INTO pymem.root_keys AS r (root_key, last_used_at)
    SELECT DISTINCT o, v_now FROM unnest(v_old) AS o
    ON CONFLICT (root_key) DO UPDATE SET last_used_at = excluded.last_used_at;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION pymem.rewrap_data_keys(char[], bytea[], integer[], text[], text, bytea[]) IS
    'Replaces wrapped data keys still under the root they were read under with ones under p_new_root_key, '
    'given each tenant''s proof; each recorded in its tenant''s chain (''key_rewrap''), and the old roots'' '
    'last use in pymem.root_keys.';

CREATE OR REPLACE FUNCTION pymem.root_key_usage()
    RETURNS TABLE (root_key text, data_keys bigint, tenants bigint, last_used_at timestamptz, retired_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY
    SELECT coalesce(u.root_key, r.root_key), coalesce(u.n, 0), coalesce(u.tenants, 0),
           CASE WHEN u.n > 0 THEN now() ELSE r.last_used_at END, r.retired_at
      FROM (SELECT k.root_key, count(*) AS n, count(DISTINCT k.user_hash) AS tenants
              FROM pymem.data_keys k WHERE k.root_key IS NOT NULL GROUP BY k.root_key) AS u
      FULL JOIN pymem.root_keys r ON r.root_key = u.root_key
     ORDER BY 1;
END
$$;
COMMENT ON FUNCTION pymem.root_key_usage() IS
    'Per root key: live data keys and tenants under it, when a data key was last under it (now while any '
    'is), and when it was retired.';

-- Retiring is the decision to destroy a root key where it is kept: backups taken
-- before last_used_at hold data keys wrapped only under it, and stop opening then.
CREATE OR REPLACE FUNCTION pymem.retire_root_key(p_root_key text) RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_last timestamptz;
    v_now  timestamptz := now();
BEGIN
    -- Locked first: a data key made under it meanwhile waits, then is refused.
    PERFORM 1 FROM pymem.root_keys r WHERE r.root_key = p_root_key FOR UPDATE;
    IF EXISTS (SELECT 1 FROM pymem.data_keys k WHERE k.root_key = p_root_key) THEN
        RAISE EXCEPTION 'retire_root_key: data keys are still under this root key'
            USING ERRCODE = 'object_in_use', HINT = 'pymem rotate-root-key re-wraps them under the current one';
    END IF;
    -- A local root is made from a ring key, which also opens the rows written before 0019.
    IF p_root_key ~ '^local:[0-9]+$' AND EXISTS (SELECT 1 FROM pymem.key_stats s
                                                  WHERE s.key_id = substr(p_root_key, 7)::integer AND s.live_rows > 0)
    THEN
        RAISE EXCEPTION 'retire_root_key: rows are still sealed under the ring key this root is made from'
            USING ERRCODE = 'object_in_use', HINT = 'pymem rotate-key moves them under tenant data keys';
    END IF;
    UPDATE pymem.root_keys r SET retired_at = coalesce(r.retired_at, v_now)
     WHERE r.root_key = p_root_key RETURNING r.last_used_at INTO v_last;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'retire_root_key: no data key was ever moved off this root key'
            USING ERRCODE = 'undefined_object', HINT = 'nothing to retire';
    END IF;
    PERFORM pymem.audit_append(pymem.no_tenant(), 'root_key_retire', 'write', NULL, NULL, '{}');
    RETURN v_last;
END
$$;
COMMENT ON FUNCTION pymem.retire_root_key(text) IS
    'Records a root key as retired once no data key is under it (pymem retire-root-key); returns when a data '
    'key was last under it. Recorded in the chain of no tenant (''root_key_retire'').';
