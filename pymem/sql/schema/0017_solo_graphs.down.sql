-- Undo of revision 0017: the solo graphs go (0016's search would not walk them,
-- and every write would still pay for them), then the threshold and the functions
-- that only 0017 has. The bundle of 0016 then puts search_graph_rows back.
SET LOCAL ROLE pymem_owner;
-- On a distributed database the DROP INDEX reaches every shard, and Citus runs the
-- function commands that follow in this transaction only if that used one connection
-- per node (as in 0016). (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

DO $do$
DECLARE
    v_index text;
BEGIN
    FOR v_index IN
        SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND c.relname LIKE 'memory\_chunks\_solo\_%'
    LOOP
        EXECUTE pg_catalog.format('DROP INDEX pymem.%I', v_index);
    END LOOP;
    EXECUTE 'ALTER TABLE pymem.tuning DROP COLUMN solo_graph_min_rows';
    EXECUTE 'ALTER TABLE pymem.tuning DROP COLUMN solo_graph_max_count';
END
$do$;

DROP FUNCTION pymem.solo_graph_rows(char);
DROP FUNCTION pymem.search_graph_rows(char);
DROP FUNCTION pymem.graph_index_rows(char, text);
DROP FUNCTION pymem.solo_graph_name(char);

RESET ROLE;
