-- Revision 0024: audit retention. A chain's old segment may be archived and dropped
-- behind a signed anchor, and a deliberate point-in-time restore re-baselined, both
-- recorded in the log.
--
-- pymem.audit_anchors holds, per chain, the row the chain now starts at: its position,
-- its hash and an Ed25519 signature of both (and of the database's name) under the
-- audit signing key, which never reaches the database. pymem.audit_retire records an
-- anchor and deletes the rows before it; the audit log's row trigger lets the owner
-- delete a row only when it lies before its chain's anchor (every other DELETE, every
-- UPDATE and every TRUNCATE is still refused, whoever runs it). The database cannot
-- check the signature: the verifier does (pymem.audit), and reports an anchor that was
-- not signed, so that rows deleted without a signed archive are found.
SET LOCAL ROLE pymem_owner;
-- See revision 0021: Citus runs the bundle's function commands in this transaction only
-- if the ALTERs below used one connection per node; a trigger on a distributed table needs
-- the second. (Placeholder settings without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';
SET LOCAL citus.enable_unsafe_triggers = on;

CREATE TABLE pymem.audit_anchors (
    user_hash  bpchar      NOT NULL CONSTRAINT audit_anchors_user_hash_check CHECK (user_hash ~ '^[0-9a-f]{64}$'),
    chain_pos  bigint      NOT NULL CONSTRAINT audit_anchors_chain_pos_check CHECK (chain_pos > 0),
    row_hash   bytea       NOT NULL CONSTRAINT audit_anchors_row_hash_check CHECK (octet_length(row_hash) = 32),
    signature  bytea       NOT NULL CONSTRAINT audit_anchors_signature_check CHECK (octet_length(signature) = 64),
    retired_at timestamptz NOT NULL,
    CONSTRAINT audit_anchors_pkey PRIMARY KEY (user_hash)
);
ALTER TABLE pymem.audit_anchors ENABLE ROW LEVEL SECURITY;
ALTER TABLE pymem.audit_anchors FORCE ROW LEVEL SECURITY;
CREATE POLICY anchors_owner ON pymem.audit_anchors FOR ALL TO pymem_owner USING (true) WITH CHECK (true);
CREATE POLICY anchors_auditor_read ON pymem.audit_anchors FOR SELECT TO pymem_auditor USING (true);

-- Through EXECUTE: Citus sends a distributed table's DDL to its shards as the statement's text.
DO $do$
BEGIN
    -- The row trigger is told which table it guards: only the live log has anchors (the
    -- read-only first log never loses a row).
    EXECUTE 'DROP TRIGGER audit_log_append_only ON pymem.audit_log';
    EXECUTE 'CREATE TRIGGER audit_log_append_only BEFORE DELETE OR UPDATE ON pymem.audit_log'
            ' FOR EACH ROW EXECUTE FUNCTION pymem.audit_reject_change(''retired rows may go'')';
    EXECUTE 'CREATE POLICY audit_owner_retire ON pymem.audit_log FOR DELETE TO pymem_owner USING (true)';
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text, 'index_terms'::text, 'update_from'::text,
        'purge'::text, 'audit_retire'::text, 'audit_rebaseline'::text]))$sql$;
    -- A retirement's row names the anchor's hash, a re-baseline's the digest of what it
    -- re-baselined from: 32 bytes, and no chunk ids.
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_check1 CHECK (CASE phase
        WHEN 'intent' THEN params_digest IS NOT NULL
        WHEN 'write' THEN params_digest IS NULL OR octet_length(params_digest) = 32 * cardinality(chunk_ids)
                          OR (operation IN ('audit_retire', 'audit_rebaseline') AND cardinality(chunk_ids) = 0
                              AND octet_length(params_digest) = 32)
        ELSE params_digest IS NULL END)$sql$;
END
$do$;

RESET ROLE;
