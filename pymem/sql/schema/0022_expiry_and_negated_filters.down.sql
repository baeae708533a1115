-- Undo 0022: the functions only 0022 has, the expiry column and AAD v3 (refused while a row
-- is sealed with it), and the 'purge' operation (refused once a purge is in the log). The bundle of
-- 0021 then puts back the functions as they were, the internal ones dropped by 0022 too.
SET LOCAL ROLE pymem_owner;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';  -- see the up step
DROP FUNCTION pymem.search_chunks_v3(char, uuid, public.vector, integer, bytea[], integer[], timestamptz[], bytea[]);
DROP FUNCTION pymem.search_chunks_on_standby_v3(char, uuid, public.vector, integer, bytea[], integer[],
                                                timestamptz[], bytea[]);
DROP FUNCTION pymem.hybrid_rows_v2(char, public.vector, integer, bytea[], integer[], timestamptz[], bytea[]);
DROP FUNCTION pymem.keyword_hits_v2(char, bytea[], bytea[], integer[], timestamptz[], integer);
DROP FUNCTION pymem.search_rows_v3(char, public.vector, integer, bytea[], integer[], timestamptz[]);
DROP FUNCTION pymem.filtered_nearest_v2(char, public.vector, integer, bytea[], integer[], integer, timestamptz[],
                                        integer);
DROP FUNCTION pymem.solo_graph_walk_v2(char);
DROP FUNCTION pymem.get_chunks_v3(char, uuid, uuid[]);
DROP FUNCTION pymem.export_chunks_v3(char, uuid, integer[], uuid, integer, timestamptz[], text);
DROP FUNCTION pymem.search_digest_v3(public.vector, integer, bytea[], integer[], timestamptz[], bytea[]);
DROP FUNCTION pymem.export_digest_v3(integer[], integer, timestamptz[], text);
DROP FUNCTION pymem.write_chunks_v3(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[],
                                    bytea[], integer[], public.vector[], smallint, bytea[], bytea[], bytea[], bytea[],
                                    timestamptz[]);
DROP FUNCTION pymem.purge_expired(char, uuid[], bytea[], bytea[]);
DROP FUNCTION pymem.row_in_window(timestamptz, timestamptz, timestamptz, timestamptz[]);
DROP FUNCTION pymem.check_window(timestamptz[]);
DROP FUNCTION pymem.filter_match(bytea[], bytea[], integer[]);
DROP FUNCTION pymem.check_filter_v2(bytea[], integer[]);
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP COLUMN expires_at';
    -- Rows sealed with AAD v3 cannot go back (apps of 0021 do not open them): the check
    -- fails, and so does the downgrade, whole.
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_aad_version_check';
    EXECUTE 'ALTER TABLE pymem.memory_chunks ADD CONSTRAINT memory_chunks_aad_version_check'
            ' CHECK (aad_version IN (1, 2))';
    -- The log is append-only: once a purge is recorded, the old check cannot come back,
    -- and the downgrade fails whole.
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text, 'index_terms'::text, 'update_from'::text]))$sql$;
END
$do$;
RESET ROLE;
