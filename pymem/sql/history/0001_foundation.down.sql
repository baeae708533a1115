-- pymem 0001 down: remove everything 0001 created.
-- The extension "vector" is left in place: other schemas in this database may use
-- it, and dropping it would destroy their data.

DROP SCHEMA IF EXISTS pymem CASCADE;

DO $$
DECLARE
    v_role text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pymem_owner') THEN
        -- Undo the global default set by 0001 in this database.
        ALTER DEFAULT PRIVILEGES FOR ROLE pymem_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
    END IF;
    -- Roles are cluster-wide. One still used by pymem in another database of
    -- this cluster must stay; say so instead of failing the downgrade.
    FOREACH v_role IN ARRAY ARRAY['pymem_app', 'pymem_auditor', 'pymem_owner'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role);
        BEGIN
            EXECUTE format('DROP ROLE %I', v_role);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % kept: still used elsewhere in this cluster (%)', v_role, SQLERRM;
        END;
    END LOOP;
END
$$;
