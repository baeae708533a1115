-- Undo of revision 0018: the functions that only 0018 has. The bundle of 0017 then
-- puts its search_rows_v2 back, which counts a filter's matches before it walks.
SET LOCAL ROLE pymem_owner;
DROP FUNCTION pymem.solo_graph_walk(char);
DROP FUNCTION pymem.solo_graph_ef_search(double precision);
RESET ROLE;
