-- Undo 0021: the postings, memory_chunks.updated_at and the functions only 0021 has. The bundle of 0020 then puts
-- back the write and delete functions as they were.
SET LOCAL ROLE pymem_owner;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';  -- see the up step
DROP FUNCTION pymem.search_hybrid_chunks(char, uuid, public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.search_hybrid_chunks_on_standby(char, uuid, public.vector, integer, bytea[], integer[],
                                                    bytea[]);
DROP FUNCTION pymem.hybrid_rows(char, public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.keyword_hits(char, bytea[], bytea[], integer[], integer);
DROP FUNCTION pymem.hybrid_search_digest(public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.check_terms(bytea[]);
DROP FUNCTION pymem.write_chunks_v2(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[],
                                    bytea[], integer[], public.vector[], smallint, bytea[], bytea[], bytea[], bytea[]);
DROP FUNCTION pymem.index_terms(char, uuid[], bytea[], bytea[], boolean);
DROP FUNCTION pymem.put_terms(char, uuid[], bytea[]);
DROP FUNCTION pymem.check_row_terms(bytea[], integer);
DROP FUNCTION pymem.chunk_digest(bytea, bytea, bytea);
DROP TABLE pymem.memory_terms;
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.memory_chunks DROP COLUMN updated_at';
    -- The log is append-only: once a back-fill is recorded, the old check cannot come
    -- back, and the downgrade fails whole.
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text, 'quarantine'::text, 'key_create'::text, 'key_unwrap'::text, 'key_rewrap'::text,
        'key_destroy'::text, 'root_key_retire'::text]))$sql$;
END
$do$;
RESET ROLE;
