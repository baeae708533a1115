-- Revision 0015: acting as a tenant needs the app's keys, not only the tenant's hash.
--
-- A tenant hash is not a secret: it is in every row, every audit row, and (before
-- this revision) in the query text of every tenant transaction, which
-- pg_stat_activity shows to every session of the same login. From now on a
-- transaction becomes a tenant's only through pymem.enter_tenant(hash, proof),
-- where the proof is HMAC(a key derived from MEMORY_TENANT_HMAC_KEY, hash): the
-- database keeps sha256(proof) and never the proof. enter_tenant then sets the
-- context together with a context ticket, a MAC under a key only the owner reads
-- (context_key), bound to the backend and the transaction; check_tenant, which
-- every API call runs, accepts the context only with a valid ticket.
-- The auditor runs pymem audit-verify, which checks the schema as doctor does,
-- starting with the revision.
GRANT SELECT ON public.alembic_version TO pymem_auditor;

SET LOCAL ROLE pymem_owner;
-- On a distributed database the copy of the chain heads below is a multi-shard read,
-- and Citus runs the function commands that follow in this transaction only if
-- that read used one connection per node. (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

-- The tenants' proof digests. A tenant's first call registers it. A tenant that
-- already has an audit chain here (any call before this revision) gets a row
-- without a digest: it is refused until the DBA, with the keys, registers it
-- (pymem register-tenants), and never registered on first use, where whoever knew
-- its hash could claim it.
CREATE TABLE pymem.tenant_proofs (
    user_hash     char(64)    PRIMARY KEY CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    proof_digest  bytea       CHECK (octet_length(proof_digest) = 32),
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL DEFAULT session_user
);
ALTER TABLE pymem.tenant_proofs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.tenant_proofs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_proofs_owner ON pymem.tenant_proofs FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
INSERT INTO pymem.tenant_proofs (user_hash, proof_digest, registered_by)
SELECT h.user_hash, NULL, 'revision 0015' FROM pymem.audit_chain_heads h;

-- The key of the context tickets: 366 random bits from three gen_random_uuid()
-- (pg_strong_random), hashed to 32 bytes. It never leaves the database.
CREATE TABLE pymem.context_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key      bytea   NOT NULL CHECK (octet_length(key) = 32)
);
ALTER TABLE pymem.context_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.context_key FORCE ROW LEVEL SECURITY;
CREATE POLICY context_key_owner ON pymem.context_key FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
INSERT INTO pymem.context_key (key)
SELECT pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));

-- A quarantine is recorded in the tenant's chain ('quarantine', phase 'write').
-- Each ALTER through EXECUTE: Citus sends the text of a statement on a distributed
-- table to the shards, and this file is one multi-statement query.
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text]))$sql$;
END
$do$;

-- count_keys takes the seals of each row (a caller id is a fourth sealed field).
DROP FUNCTION pymem.count_keys(char, integer[], integer);

RESET ROLE;
