-- The tenant context and the checks every API call makes before it touches a row.
--
-- A tenant is the HMAC of a user id (64 lowercase hex, pymem.security.hmac_user).
-- The context is the transaction-local setting app.user_hash; the row-level
-- policies on every tenant table compare user_hash with it, and every API
-- function takes the tenant as its first argument and checks it against it.

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

-- Citus routes a call by its tenant argument, and the caller chooses that
-- argument, so it is never trusted on its own: it must equal the context.
CREATE OR REPLACE FUNCTION pymem.check_tenant(p_user_hash char(64)) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
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
$$;
COMMENT ON FUNCTION pymem.check_tenant(char) IS
    'Raises insufficient_privilege unless the argument is this transaction''s tenant context.';

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

-- The AAD version a client seals new rows with: older clients fail loudly
-- instead of writing rows whose labels are not bound.
CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_aad_version IS DISTINCT FROM 2 THEN
        RAISE EXCEPTION 'pymem: new rows must be sealed with AAD version 2' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION pymem.check_aad_version(smallint) IS
    'Raises invalid_parameter_value unless new rows are sealed with AAD version 2.';
