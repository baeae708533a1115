-- Revision 0017: solo graphs. A tenant with pymem.tuning.solo_graph_min_rows rows or
-- more (up to solo_graph_max_count tenants, largest first) gets an HNSW graph of its
-- own rows alone (`pymem solo-graphs` builds and drops them), which its searches walk
-- instead of its bucket's: no neighbour's rows can crowd it (A7). This step adds the
-- two knobs; the functions are the bundle's.
SET LOCAL ROLE pymem_owner;

-- Through EXECUTE: Citus sends the text of a statement on a distributed or
-- reference table to the shards, and this file is one multi-statement query. Each
-- CHECK apart, named: Citus refuses a column added with an unnamed constraint.
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.tuning ADD COLUMN solo_graph_min_rows integer NOT NULL DEFAULT 2000';
    EXECUTE 'ALTER TABLE pymem.tuning ADD CONSTRAINT tuning_solo_graph_min_rows_check'
            ' CHECK (solo_graph_min_rows BETWEEN 1 AND 100000000)';
    -- Every write and every plan of memory_chunks locks each of its indexes: 64 bucket
    -- graphs and this many solo graphs, per transaction, in the server's lock table
    -- (max_locks_per_transaction x max_connections).
    EXECUTE 'ALTER TABLE pymem.tuning ADD COLUMN solo_graph_max_count integer NOT NULL DEFAULT 64';
    EXECUTE 'ALTER TABLE pymem.tuning ADD CONSTRAINT tuning_solo_graph_max_count_check'
            ' CHECK (solo_graph_max_count BETWEEN 0 AND 10000)';
END
$do$;

RESET ROLE;
