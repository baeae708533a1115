-- Revision 0016: every audited write records what it wrote, so that a verifier
-- holding the keys tells a live row from an older copy of it (A4).
--
-- write_chunks and rekey_chunks_v2 take a write record per row: a MAC the client
-- computes under the tenant's key over the row as written (pymem.freshness). The
-- write's audit row carries the records as its params_digest, in the order of its
-- chunk_ids, so they are in the hash chain. `pymem verify-rows` then requires every
-- live row to be the one its latest audited write left, and no row an audited
-- delete removed to be live. A row written or deleted by direct DML is audited with
-- a record of 32 zero bytes, which no row matches, and a TRUNCATE appends a row to
-- every tenant's chain.
SET LOCAL ROLE pymem_owner;
-- On a distributed database the constraint is checked on every shard, and Citus
-- runs the function commands that follow in this transaction only if that used
-- one connection per node. (A placeholder setting without Citus.)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

-- Each ALTER through EXECUTE: Citus sends the text of a statement on a distributed
-- table to the shards, and this file is one multi-statement query.
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_check1 CHECK (CASE phase
        WHEN 'intent' THEN params_digest IS NOT NULL
        WHEN 'write' THEN params_digest IS NULL OR octet_length(params_digest) = 32 * cardinality(chunk_ids)
        ELSE params_digest IS NULL END)$sql$;
END
$do$;

-- Both take the records as a last argument now; the old signatures go, so that
-- no API write leaves a row without its record.
DROP FUNCTION pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                                 integer[], public.vector[], smallint);
DROP FUNCTION pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer, smallint);

RESET ROLE;
