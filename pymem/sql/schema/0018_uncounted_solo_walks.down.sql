-- Undo of revision 0018: the functions that only 0018 has. The bundle of 0017 then
-- puts its search_rows_v2 back, which counts a filter's matches before it walks and
-- reads them in a second statement.
SET LOCAL ROLE pymem_owner;
DROP FUNCTION pymem.solo_graph_walk(char);
DROP FUNCTION pymem.solo_graph_ef_search(double precision);
DROP FUNCTION pymem.filtered_nearest(char, public.vector, integer, bytea[], integer[], integer);
RESET ROLE;
