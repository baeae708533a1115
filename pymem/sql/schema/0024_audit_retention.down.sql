-- Undo 0024: refused once a segment was retired or a re-baseline recorded (the log is
-- append-only again below 0024, and its old checks would fail), and the downgrade fails
-- whole. The bundle of 0023 then puts back the functions as they were.
SET LOCAL ROLE pymem_owner;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';  -- see the up step
SET LOCAL citus.enable_unsafe_triggers = on;
DROP FUNCTION pymem.audit_retire(char, bigint, bytea, bytea);
DROP FUNCTION pymem.audit_rebaseline(bytea);
DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pymem.audit_anchors) THEN
        RAISE EXCEPTION 'audit segments were retired: the database cannot go below revision 0024';
    END IF;
    EXECUTE 'DROP TABLE pymem.audit_anchors';
    EXECUTE 'DROP POLICY audit_owner_retire ON pymem.audit_log';
    EXECUTE 'DROP TRIGGER audit_log_append_only ON pymem.audit_log';
    EXECUTE 'CREATE TRIGGER audit_log_append_only BEFORE DELETE OR UPDATE ON pymem.audit_log'
            ' FOR EACH ROW EXECUTE FUNCTION pymem.audit_reject_change()';
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_check1 CHECK (CASE phase
        WHEN 'intent' THEN params_digest IS NOT NULL
        WHEN 'write' THEN params_digest IS NULL OR octet_length(params_digest) = 32 * cardinality(chunk_ids)
        ELSE params_digest IS NULL END)$sql$;
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text, 'index_terms'::text, 'update_from'::text,
        'purge'::text]))$sql$;
END
$do$;
RESET ROLE;
