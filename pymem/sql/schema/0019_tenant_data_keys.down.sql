-- Undo 0019: rows sealed under a tenant's data key cannot go back to the single key
-- without their plaintext, so the downgrade refuses while any exist; the log is
-- append-only, so with a key event recorded the old check cannot come back either,
-- and the downgrade fails whole.
DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pymem.memory_chunks WHERE key_id < 0) THEN
        RAISE EXCEPTION 'pymem: rows are sealed under tenant data keys; re-seal them under the single key first'
            USING ERRCODE = 'object_in_use';
    END IF;
    -- The reference table first (Citus: no DDL on one after parallel DDL in the transaction).
    EXECUTE 'DELETE FROM pymem.encryption_keys WHERE key_id < 0';
    EXECUTE 'ALTER TABLE pymem.encryption_keys DROP CONSTRAINT encryption_keys_key_id_check';
    EXECUTE 'ALTER TABLE pymem.encryption_keys ADD CONSTRAINT encryption_keys_key_id_check CHECK (key_id > 0)';
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text]))$sql$;
    EXECUTE 'ALTER TABLE pymem.quarantined_chunks DROP CONSTRAINT quarantined_chunks_reason_check';
    EXECUTE $sql$ALTER TABLE pymem.quarantined_chunks ADD CONSTRAINT quarantined_chunks_reason_check
        CHECK (reason = ANY (ARRAY['does not open'::text, 'key not in the ring'::text]))$sql$;
    EXECUTE 'DELETE FROM pymem.key_stats WHERE key_id < 0';
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_key_id_check';
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_key_id_check CHECK (key_id > 0)';
    EXECUTE 'ALTER TABLE pymem.key_stats DROP CONSTRAINT key_stats_key_id_check';
    EXECUTE 'ALTER TABLE pymem.key_stats ADD CONSTRAINT key_stats_key_id_check CHECK (key_id > 0)';
END
$do$;
DROP FUNCTION IF EXISTS pymem.data_keys_of(char);
DROP FUNCTION IF EXISTS pymem.live_data_keys(char);
DROP FUNCTION IF EXISTS pymem.create_data_key(char, integer, text, bytea, boolean);
DROP FUNCTION IF EXISTS pymem.destroy_data_keys(char);
DROP FUNCTION IF EXISTS pymem.check_data_keys(char, integer[]);
DROP FUNCTION IF EXISTS pymem.data_key_event_id(integer);
DROP FUNCTION IF EXISTS pymem.check_root_key_in_use(text);
DROP FUNCTION IF EXISTS pymem.warn_seals(integer, bigint, bigint);
DROP FUNCTION IF EXISTS pymem.data_keys_to_rewrap(text, integer);
DROP FUNCTION IF EXISTS pymem.rewrap_data_keys(char[], bytea[], integer[], text[], text, bytea[]);
DROP FUNCTION IF EXISTS pymem.root_key_usage();
DROP FUNCTION IF EXISTS pymem.retire_root_key(text);
DROP TABLE pymem.root_keys;
DROP TABLE pymem.data_keys;
