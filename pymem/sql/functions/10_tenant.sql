-- The tenant context and the checks every API call makes before it touches a row.
--
-- A tenant is the HMAC of a user id (64 lowercase hex, pymem.security.hmac_user).
-- The context is the transaction-local setting app.user_hash; the row-level
-- policies on every tenant table compare user_hash with it, and every API
-- function takes the tenant as its first argument and checks it against it.
--
-- The hash is not a secret (it is in every row and audit row), so knowing it must
-- not be enough to act as the tenant. A transaction becomes a tenant's through
-- enter_tenant(hash, proof) only: the proof is a MAC of the hash under a key
-- derived from the app's MEMORY_TENANT_HMAC_KEY, sent as a bind parameter (never
-- query text, which pg_stat_activity shows to other sessions of the login), and
-- checked against its digest in tenant_proofs. enter_tenant then sets the context
-- with a ticket: a MAC under context_key, which only the owner reads, of the hash,
-- this backend's (global) pid and this transaction's start. check_tenant, which
-- every API call runs first, refuses a context without a valid ticket, so a
-- SET LOCAL app.user_hash of its own gets a session nothing.

-- nullif: after a SET LOCAL, current_setting(name, true) returns '' rather than
-- NULL on that connection, and '' must mean "no tenant" (fail closed).
CREATE OR REPLACE FUNCTION pymem.current_tenant() RETURNS char(64)
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN nullif(current_setting('app.user_hash', true), '')::char(64);
COMMENT ON FUNCTION pymem.current_tenant() IS
    'The tenant of this transaction (app.user_hash), or NULL when none is set.';

-- No HMAC output is all zeros in practice, so this hash names no real tenant.
CREATE OR REPLACE FUNCTION pymem.no_tenant() RETURNS char(64)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN repeat('0', 64)::char(64);
COMMENT ON FUNCTION pymem.no_tenant() IS
    'The audit chain of events that belong to no tenant (a TRUNCATE by the owner): 64 zeros.';

-- This backend's id as the context ticket binds it: on Citus the global pid, which
-- the coordinator gives every connection it opens to a worker for this session
-- (so a delegated call on the worker carries the caller's); elsewhere the pid.
CREATE OR REPLACE FUNCTION pymem.backend_gpid() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gpid bigint;
BEGIN
    IF to_regprocedure('pg_catalog.citus_backend_gpid()') IS NULL THEN
        RETURN pg_backend_pid();
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_backend_gpid()' INTO v_gpid;
    RETURN v_gpid;
END
$$;
COMMENT ON FUNCTION pymem.backend_gpid() IS
    'This backend''s id for context tickets: Citus'' global pid where Citus is installed, else the pid.';

-- Whether this node is a Citus worker (Citus installed, and not the coordinator).
CREATE OR REPLACE FUNCTION pymem.on_citus_worker() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_coordinator boolean;
BEGIN
    IF to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v_coordinator;
    RETURN NOT v_coordinator;
END
$$;
COMMENT ON FUNCTION pymem.on_citus_worker() IS 'Whether this node is a Citus worker (not the coordinator).';

-- sha256(k || sha256(k || m)): the hash-of-hash form, not k || m alone, so that no
-- length extension of one ticket's MAC is a valid MAC (PostgreSQL has sha256 but
-- no HMAC without pgcrypto). The message is fixed-format and recomputed, never parsed.
CREATE OR REPLACE FUNCTION pymem.context_mac(p_user_hash char(64), p_gpid bigint, p_at_us bigint) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_key bytea := (SELECT k.key FROM pymem.context_key k);
BEGIN
    IF v_key IS NULL THEN
        RAISE EXCEPTION 'pymem: the context key is missing' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN encode(sha256(v_key || sha256(v_key || convert_to(
        concat_ws('|', 'pymem context v1', p_user_hash, p_gpid, p_at_us), 'UTF8'))), 'hex');
END
$$;
COMMENT ON FUNCTION pymem.context_mac(char, bigint, bigint) IS
    'The context ticket''s MAC of a tenant, a backend and a transaction start (microseconds), under context_key.';

-- How long a ticket stays valid where it did not start: a Citus worker running a
-- call the coordinator delegated, whose clock and transaction start differ from
-- the coordinator's. Where the transaction started, the ticket must name its start
-- exactly, so it is worthless in any later transaction. On the workers it is
-- a bearer token for this long: pymem distribute turns track_activities off
-- there, so that no session sees the SET LOCAL text Citus forwards.
CREATE OR REPLACE FUNCTION pymem.forwarded_ticket_ttl_us() RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    RETURN 120000000;
COMMENT ON FUNCTION pymem.forwarded_ticket_ttl_us() IS
    'How long a context ticket is accepted on a Citus worker after its transaction started (120 s).';

-- Citus routes a call by its tenant argument, and the caller chooses that
-- argument, so it is never trusted on its own: it must equal the context, and the
-- context must carry the ticket enter_tenant made for it.
CREATE OR REPLACE FUNCTION pymem.check_tenant(p_user_hash char(64)) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The raw setting, not current_tenant(): its char(64) cast would cut a longer
    -- value down to a hash the policy then does not match.
    v_context text := current_setting('app.user_hash', true);
    v_raw     text := coalesce(current_setting('app.tenant_ticket', true), '');
    v_ticket  text[];
    v_gpid    bigint;
    v_at_us   bigint;
    v_now_us  bigint := (extract(epoch FROM now()) * 1000000)::bigint;
    -- A call the coordinator delegated to this worker: only on a Citus worker node,
    -- never on the coordinator or without Citus, where the ticket must name this
    -- very transaction (a client chooses its application_name, so that alone
    -- would let any session ask for the forwarded rule).
    v_forwarded boolean := pymem.on_citus_worker()
                           AND current_setting('application_name') LIKE 'citus\_internal gpid=%';
BEGIN
    -- Matched without capture groups, then split: regexp_match with groups took
    -- 0.15 ms a call here (every tenant call runs this, a read three times).
    IF v_raw ~ '^[0-9]{1,19}\.[0-9]{1,19}\.[0-9a-f]{64}$' THEN
        v_ticket := string_to_array(v_raw, '.');
    END IF;
    IF p_user_hash IS NULL OR v_context IS NULL OR v_context !~ '^[0-9a-f]{64}$'
       OR v_context <> p_user_hash::text THEN
        RAISE EXCEPTION 'pymem: the tenant argument is not the tenant context of this transaction'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'open the transaction with pymem.enter_tenant (pymem.set_rls_context); '
                         'on Citus, citus.propagate_set_commands must be ''local''';
    END IF;
    IF v_ticket IS NOT NULL THEN
        v_gpid := v_ticket[1]::numeric;
        v_at_us := v_ticket[2]::numeric;
    END IF;
    IF v_ticket IS NULL OR v_gpid <> pymem.backend_gpid()
       OR v_ticket[3] <> pymem.context_mac(p_user_hash, v_gpid, v_at_us)
       OR (v_forwarded AND abs(v_now_us - v_at_us) > pymem.forwarded_ticket_ttl_us())
       OR (NOT v_forwarded AND v_at_us <> v_now_us) THEN
        RAISE EXCEPTION 'pymem: this transaction did not enter the tenant with its proof'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a tenant transaction starts with pymem.enter_tenant(user_hash, proof): '
                         'pymem.set_rls_context does this; the proof needs MEMORY_TENANT_HMAC_KEY';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_tenant(char) IS
    'Raises insufficient_privilege unless the argument is this transaction''s tenant context, entered '
    'with its proof (pymem.enter_tenant) in this transaction.';

-- The one way into a tenant's context. SET LOCAL through EXECUTE, not
-- set_config(): Citus forwards a SET LOCAL (citus.propagate_set_commands =
-- 'local') to the workers that run the tenant's delegated calls. What it forwards
-- is the hash and the ticket, never the proof.
CREATE OR REPLACE FUNCTION pymem.enter_tenant(p_user_hash char(64), p_proof bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_digest bytea;
    v_gpid   bigint := pymem.backend_gpid();
    v_now_us bigint := (extract(epoch FROM now()) * 1000000)::bigint;
BEGIN
    IF p_user_hash IS NULL OR p_user_hash::text !~ '^[0-9a-f]{64}$' OR p_user_hash = pymem.no_tenant()
       OR p_proof IS NULL OR octet_length(p_proof) <> 32 THEN
        RAISE EXCEPTION 'enter_tenant: needs a tenant hash (64 lowercase hex, not the audit''s own 64 zeros) and '
                        'a 32-byte proof'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.proof_digest INTO v_digest FROM pymem.tenant_proofs t WHERE t.user_hash = p_user_hash;
    IF NOT FOUND THEN  -- first use registers the tenant
        INSERT INTO pymem.tenant_proofs (user_hash, proof_digest) VALUES (p_user_hash, sha256(p_proof))
            ON CONFLICT (user_hash) DO NOTHING;
        SELECT t.proof_digest INTO STRICT v_digest FROM pymem.tenant_proofs t WHERE t.user_hash = p_user_hash;
    END IF;
    IF v_digest IS NULL THEN
        RAISE EXCEPTION 'pymem: this tenant predates tenant proofs and is not registered yet'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the DBA runs `pymem register-tenants` once after upgrading, with the app''s keys';
    END IF;
    IF v_digest <> sha256(p_proof) THEN
        RAISE EXCEPTION 'pymem: wrong tenant proof' USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('SET LOCAL app.user_hash = %L', p_user_hash);
    EXECUTE format('SET LOCAL app.tenant_ticket = %L', concat_ws('.', v_gpid, v_now_us,
                                                               pymem.context_mac(p_user_hash, v_gpid, v_now_us)));
    -- The key of this tenant's read-intent digests (pymem.keyed_digest): derived
    -- from the proof, which no copy of the database holds, so neither the auditor
    -- nor a dump can recompute a digest from a guessed query.
    EXECUTE format('SET LOCAL app.read_digest_key = %L',
                   encode(sha256(convert_to('pymem read digest v1|', 'UTF8') || p_proof), 'hex'));
END
$$;
COMMENT ON FUNCTION pymem.enter_tenant(char, bytea) IS
    'Makes this transaction the tenant''s (app.user_hash and its context ticket) if the proof is the '
    'tenant''s: HMAC of the hash under the app''s proof key. A new tenant is registered on first use.';

-- After upgrading to 0015, tenants that existed before are registered by the DBA
-- (the owner or a superuser: no pymem role may call these) running
-- `pymem register-tenants` with the app's HMAC key, which makes each proof from the
-- hash alone. Granting it to a role without the keys would let that role claim
-- any unregistered tenant with a proof of its own choosing.
CREATE OR REPLACE FUNCTION pymem.unregistered_tenants() RETURNS SETOF char(64)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN QUERY SELECT t.user_hash FROM pymem.tenant_proofs t WHERE t.proof_digest IS NULL ORDER BY t.user_hash;
END
$$;
COMMENT ON FUNCTION pymem.unregistered_tenants() IS
    'Tenants without a proof digest: those that had an audit chain when revision 0015 was applied.';

CREATE OR REPLACE FUNCTION pymem.register_tenant_proofs(p_user_hashes char(64)[], p_digests bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
DECLARE
    v_count integer;
BEGIN
    IF cardinality(p_user_hashes) IS DISTINCT FROM cardinality(p_digests) THEN
        RAISE EXCEPTION 'register_tenant_proofs: one digest per tenant' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only tenants that predate 0015 and have no digest yet: a registered proof never changes.
    UPDATE pymem.tenant_proofs t SET proof_digest = u.digest, registered_at = now(), registered_by = session_user
      FROM unnest(p_user_hashes, p_digests) AS u(user_hash, digest)
     WHERE t.user_hash = u.user_hash AND t.proof_digest IS NULL AND octet_length(u.digest) = 32;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION pymem.register_tenant_proofs(char[], bytea[]) IS
    'Registers the proof digests (sha256 of each proof) of tenants that predate 0015; returns how many.';

-- EXECUTE, so that this function exists (and answers false) where Citus is not
-- installed.
CREATE OR REPLACE FUNCTION pymem.chunks_distributed() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
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
$$;
COMMENT ON FUNCTION pymem.chunks_distributed() IS
    'Whether pymem.memory_chunks is a Citus distributed table.';

-- plpgsql, not a BEGIN ATOMIC body: an atomic body depends on the column it
-- reads, and Citus' create_distributed_table, which replaces the table, would
-- drop it.
CREATE OR REPLACE FUNCTION pymem.embedding_dim() RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN (SELECT a.atttypmod FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = 'pymem.memory_chunks'::regclass AND a.attname = 'embedding');
END
$$;
COMMENT ON FUNCTION pymem.embedding_dim() IS
    'The dimension of memory_chunks.embedding, fixed when the schema was first migrated.';

-- vector, or halfvec (revision 0023: PYMEM_EMBEDDING_TYPE), whose range the client checks
-- before it sends an embedding (float16 ends at 65504).
CREATE OR REPLACE FUNCTION pymem.embedding_type() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET row_security = on
AS $$
BEGIN
    RETURN (SELECT t.typname::text FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = 'pymem.memory_chunks'::regclass AND a.attname = 'embedding');
END
$$;
COMMENT ON FUNCTION pymem.embedding_type() IS
    'How memory_chunks.embedding stores the searchable copy: vector or halfvec (revision 0023).';

-- The AAD version a client seals new rows with: older clients fail loudly
-- instead of writing rows whose labels are not bound.
CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- 3 since revision 0022 (it binds the row's expiry); 2 from apps of 0021 until they are upgraded.
    IF p_aad_version IS NULL OR p_aad_version NOT IN (2, 3) THEN
        RAISE EXCEPTION 'pymem: new rows must be sealed with AAD version 3 (or 2, without an expiry)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_aad_version(smallint) IS
    'Raises invalid_parameter_value unless new rows are sealed with AAD version 3 or 2.';
