-- Undo of revision 0016. The audit log is append-only: a database whose log holds
-- write records cannot go below 0016, and this step then fails whole (the old
-- constraint does not hold for those rows).
SET LOCAL ROLE pymem_owner;
-- On a distributed database the constraint is checked on every shard, and Citus
-- runs the function commands that follow in this transaction only if that used
-- one connection per node. (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_check1';
    EXECUTE 'ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_check1 CHECK ((phase = ''intent'') = (params_digest IS NOT NULL))';
END
$do$;

DROP FUNCTION pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                                 integer[], public.vector[], smallint, bytea[]);
DROP FUNCTION pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer, smallint,
                                    bytea[]);
DROP FUNCTION pymem.check_write_records(bytea[]);
DROP FUNCTION pymem.write_records_of(uuid[], bytea[], uuid[]);
DROP FUNCTION pymem.no_write_records(integer);

RESET ROLE;
