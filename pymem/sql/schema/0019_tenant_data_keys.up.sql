-- Revision 0019: per-tenant data keys (envelope encryption). Each tenant's rows are
-- sealed under a data key of its own, wrapped by a root key that the database never
-- sees (a KMS key, an HSM key, or one derived from the environment's keys). A data
-- key is named in memory_chunks.key_id as the negative of its version in the tenant
-- (-1, -2, ...); a positive key_id stays a key of the environment's ring (the rows
-- written before). Erasing a tenant destroys its wrapped data keys with its rows.
SET LOCAL ROLE pymem_owner;

-- Each ALTER through EXECUTE: Citus sends the text of a statement on a distributed or
-- reference table to the shards, and this file is one multi-statement query.
DO $do$
BEGIN
    -- The reference table first: Citus refuses DDL on a reference table after parallel DDL
    -- on a distributed one in the same transaction.
    EXECUTE 'ALTER TABLE pymem.encryption_keys DROP CONSTRAINT encryption_keys_key_id_check';
    EXECUTE 'ALTER TABLE pymem.encryption_keys ADD CONSTRAINT encryption_keys_key_id_check CHECK (key_id <> 0)';
    -- memory_chunks.key_id names a data key as -version, and may only name a registered
    -- id: versions 1 to 1000 are registered here once, so that making a tenant's data key
    -- writes nothing outside the tenant (on Citus, it runs on the tenant's worker).
    -- (One multi-row VALUES: Citus runs an INSERT ... SELECT into a reference table as a
    -- COPY, which row security refuses.)
    EXECUTE 'INSERT INTO pymem.encryption_keys (key_id) VALUES '
            || (SELECT string_agg(format('(%s)', -v), ', ') FROM generate_series(1, 1000) AS v);
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_key_id_check';
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_key_id_check CHECK (key_id <> 0)';
    EXECUTE 'ALTER TABLE pymem.key_stats DROP CONSTRAINT key_stats_key_id_check';
    EXECUTE 'ALTER TABLE pymem.key_stats ADD CONSTRAINT key_stats_key_id_check CHECK (key_id <> 0)';
    -- Data keys created, unwrapped, re-wrapped and destroyed are recorded in the
    -- tenant's chain; a root key retired, in the chain of no tenant.
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text]))$sql$;
    -- A rotation quarantines rows under a destroyed data key, and the rows of an erased
    -- tenant put back from a copy, instead of re-sealing them.
    EXECUTE 'ALTER TABLE pymem.quarantined_chunks DROP CONSTRAINT quarantined_chunks_reason_check';
    EXECUTE $sql$ALTER TABLE pymem.quarantined_chunks ADD CONSTRAINT quarantined_chunks_reason_check
        CHECK (reason = ANY (ARRAY['does not open'::text, 'key not in the ring'::text, 'data key destroyed'::text,
                                   'tenant erased'::text]))$sql$;
END
$do$;

-- One row per data key of a tenant. A destroyed key keeps its row, without its
-- wrapped bytes or root, so that its version is never used again and a row sealed
-- under it is told apart from one under a key that never existed.
-- user_hash is bpchar, not char(64), like every tenant column since 0006: Citus runs a
-- delegated call's statements only where the tenant value equals the call's argument,
-- typmod included.
CREATE TABLE pymem.data_keys (
    user_hash    bpchar      NOT NULL CONSTRAINT data_keys_user_hash_check CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    version      integer     NOT NULL CONSTRAINT data_keys_version_check CHECK (version > 0),
    root_key     text        CONSTRAINT data_keys_root_key_check CHECK (length(root_key) BETWEEN 1 AND 2048),
    wrapped      bytea       CONSTRAINT data_keys_wrapped_check CHECK (octet_length(wrapped) BETWEEN 32 AND 8192),
    created_at   timestamptz NOT NULL DEFAULT now(),
    wrapped_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    destroyed_at timestamptz,
    CONSTRAINT data_keys_pkey PRIMARY KEY (user_hash, version),
    CONSTRAINT data_keys_destroyed_check
        CHECK ((destroyed_at IS NULL) = (wrapped IS NOT NULL) AND (wrapped IS NULL) = (root_key IS NULL))
);
-- At most one key seals a tenant's new rows.
CREATE UNIQUE INDEX data_keys_current ON pymem.data_keys (user_hash)
    WHERE retired_at IS NULL AND destroyed_at IS NULL;
-- Root rotation finds the keys still under an old root.
CREATE INDEX data_keys_root_key ON pymem.data_keys (root_key) WHERE root_key IS NOT NULL;
ALTER TABLE pymem.data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.data_keys FORCE ROW LEVEL SECURITY;
-- Nobody but the owner's definer functions, each of which checks the tenant context
-- or is the maintainer's, and audits what it does.
CREATE POLICY data_keys_owner ON pymem.data_keys FOR ALL TO pymem_owner USING (true) WITH CHECK (true);

-- Root keys data keys moved off (root rotation), and their retirement: what a DBA
-- needs to know before destroying one (backups older than last_used_at need it).
CREATE TABLE pymem.root_keys (
    root_key     text        NOT NULL CONSTRAINT root_keys_pkey PRIMARY KEY
                             CONSTRAINT root_keys_root_key_check CHECK (length(root_key) BETWEEN 1 AND 2048),
    last_used_at timestamptz NOT NULL,
    retired_at   timestamptz
);
ALTER TABLE pymem.root_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.root_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY root_keys_owner ON pymem.root_keys FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
CREATE POLICY root_keys_readers ON pymem.root_keys FOR SELECT TO pymem_maintainer, pymem_auditor USING (true);
GRANT SELECT ON pymem.root_keys TO pymem_maintainer, pymem_auditor;

RESET ROLE;
