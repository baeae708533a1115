-- Undo 0007. Rows keep their ids (a hashed caller id stays the row's id), but the
-- sealed caller ids and the metadata tags are dropped with their columns.
SET LOCAL ROLE pymem_owner;

DROP FUNCTION pymem.search_chunks_on_standby_v2(char, uuid, public.vector, integer, bytea[], integer[]);
DROP FUNCTION pymem.search_chunks_v2(char, uuid, public.vector, integer, bytea[], integer[]);
DROP FUNCTION pymem.search_rows_v2(char, public.vector, integer, bytea[], integer[]);
DROP FUNCTION pymem.export_chunks_v2(char, uuid, integer[], uuid, integer);
DROP FUNCTION pymem.get_chunks_v2(char, uuid, uuid[]);
DROP FUNCTION pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer, smallint);
DROP FUNCTION pymem.delete_chunk_ids(char, uuid[]);
DROP FUNCTION pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                                 integer[], public.vector[], smallint);
DROP FUNCTION pymem.filtered_search_digest(public.vector, integer, bytea[], integer[]);
DROP FUNCTION pymem.tags_match(bytea[], bytea[], integer[]);
DROP FUNCTION pymem.check_filter(bytea[], integer[]);

ALTER TABLE pymem.tuning DROP COLUMN filtered_exact_max_rows;
DROP INDEX pymem.memory_chunks_meta_tags_idx;
ALTER TABLE pymem.memory_chunks DROP COLUMN meta_tags;
ALTER TABLE pymem.memory_chunks DROP COLUMN ref_cipher;

RESET ROLE;
