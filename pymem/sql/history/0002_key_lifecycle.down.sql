-- pymem 0002 down: drop the key lifecycle objects and the maintainer role.
DROP TRIGGER memory_chunks_key_stats_insert ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_update ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_delete ON pymem.memory_chunks;
DROP TRIGGER memory_chunks_key_stats_truncate ON pymem.memory_chunks;
DROP FUNCTION pymem.rekey_chunks(uuid[], integer[], bytea[], bytea[], bytea[], integer);
DROP FUNCTION pymem.export_chunks(integer[], uuid, integer);
DROP FUNCTION pymem.tenants_with_keys(integer[]);
DROP FUNCTION pymem.key_usage();
DROP FUNCTION pymem.track_key_stats();
DROP FUNCTION pymem.reset_live_counts();
DROP TABLE pymem.key_stats;
REVOKE ALL ON FUNCTION pymem.embedding_dim() FROM pymem_maintainer;
REVOKE USAGE ON SCHEMA pymem FROM pymem_maintainer;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pymem_maintainer') THEN
        BEGIN
            DROP ROLE pymem_maintainer;
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role pymem_maintainer kept: still used elsewhere in this cluster (%)', SQLERRM;
        END;
    END IF;
END
$$;
