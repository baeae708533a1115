-- Undo 0021: the postings and the functions only 0021 has. The bundle of 0020 then puts
-- back the write and delete functions as they were.
SET LOCAL ROLE pymem_owner;
DROP FUNCTION pymem.search_hybrid_chunks(char, uuid, public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.search_hybrid_chunks_on_standby(char, uuid, public.vector, integer, bytea[], integer[],
                                                    bytea[]);
DROP FUNCTION pymem.hybrid_rows(char, public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.keyword_hits(char, bytea[], bytea[], integer[], integer);
DROP FUNCTION pymem.hybrid_search_digest(public.vector, integer, bytea[], integer[], bytea[]);
DROP FUNCTION pymem.check_terms(bytea[]);
DROP FUNCTION pymem.write_chunks_v2(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[],
                                    bytea[], integer[], public.vector[], smallint, bytea[], bytea[]);
DROP FUNCTION pymem.index_terms(char, uuid[], bytea[], bytea[], bytea[]);
DROP FUNCTION pymem.put_terms(char, uuid[], bytea[]);
DROP FUNCTION pymem.check_row_terms(bytea[], integer);
DROP TABLE pymem.memory_terms;
RESET ROLE;
