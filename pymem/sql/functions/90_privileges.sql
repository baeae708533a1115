-- Who may call what: every privilege on pymem's functions, tables and schema.
--
-- Roles (created by the first migration, cluster-wide):
--   pymem_owner       owns every object; NOSUPERUSER, so row security binds it.
--   pymem_app         the application (GRANT pymem_app TO your app's login).
--   pymem_maintainer  key operations: rotation, registration, quarantine.
--   pymem_auditor     reads and verifies the audit log.
-- None of them is a superuser or bypasses row security.
--
-- Functions: every grant on a function pymem_owner owns goes, whoever holds it
-- (PUBLIC, the three roles, a login a superuser granted one to, and what was
-- passed on from a grant option), then each gets exactly the grants below: this
-- file is the whole truth on each upgrade and on pymem migrate --reapply-functions.
-- (Functions the owner creates are not executable by PUBLIC in the first place:
-- ALTER DEFAULT PRIVILEGES FOR ROLE pymem_owner REVOKE EXECUTE ON FUNCTIONS FROM
-- PUBLIC.) A function granted to no role is internal: only other definer
-- functions, running as pymem_owner, call it.
--
-- Tables: the app and the maintainer have no privilege on any table; they reach
-- rows only through the definer functions, each of which audits what it does.
-- The grants below are the only ones: tables are created owner-only.

DO $revoke$
DECLARE
    v_grant record;
BEGIN
    FOR v_grant IN
        SELECT DISTINCT p.oid::pg_catalog.regprocedure AS fn, a.grantee
          FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) AS a
         WHERE p.pronamespace = 'pymem'::pg_catalog.regnamespace
           AND p.proowner = 'pymem_owner'::pg_catalog.regrole AND a.grantee <> p.proowner
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s CASCADE', v_grant.fn,
            CASE WHEN v_grant.grantee = 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(v_grant.grantee)) END);
    END LOOP;
END
$revoke$;

-- The application: its tenant's writes and audited reads.
GRANT EXECUTE ON FUNCTION
    pymem.embedding_dim(),
    pymem.embedding_type(),
    pymem.enter_tenant(char, bytea),
    pymem.write_chunks(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                       integer[], public.vector[], smallint, bytea[]),
    pymem.write_chunks_v2(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                          integer[], public.vector[], smallint, bytea[], bytea[], bytea[], bytea[]),
    pymem.write_chunks_v3(char, boolean, uuid[], text[], text[], bytea[], bytea[], bytea[], bytea[], bytea[],
                          integer[], public.vector[], smallint, bytea[], bytea[], bytea[], bytea[], timestamptz[]),
    pymem.index_terms(char, uuid[], bytea[], bytea[], boolean),
    pymem.delete_chunk_ids(char, uuid[]),
    pymem.purge_expired(char, uuid[], bytea[], bytea[]),
    pymem.delete_document(char, text),
    pymem.erase_tenant(char),
    pymem.search_digest(public.vector, integer),
    pymem.filtered_search_digest(public.vector, integer, bytea[], integer[]),
    pymem.get_digest(uuid[]),
    pymem.export_digest(integer[], integer),
    pymem.read_intent(char, uuid, text, bytea),
    pymem.read_result(char, uuid, text, uuid[]),
    pymem.search_chunks_v2(char, uuid, public.vector, integer, bytea[], integer[]),
    pymem.search_chunks_on_standby_v2(char, uuid, public.vector, integer, bytea[], integer[]),
    pymem.hybrid_search_digest(public.vector, integer, bytea[], integer[], bytea[]),
    pymem.search_hybrid_chunks(char, uuid, public.vector, integer, bytea[], integer[], bytea[]),
    pymem.search_hybrid_chunks_on_standby(char, uuid, public.vector, integer, bytea[], integer[], bytea[]),
    pymem.get_chunks_v2(char, uuid, uuid[]),
    pymem.export_chunks_v2(char, uuid, integer[], uuid, integer),
    pymem.search_digest_v3(public.vector, integer, bytea[], integer[], timestamptz[], bytea[]),
    pymem.export_digest_v3(integer[], integer, timestamptz[], text),
    pymem.search_chunks_v3(char, uuid, public.vector, integer, bytea[], integer[], timestamptz[], bytea[]),
    pymem.search_chunks_on_standby_v3(char, uuid, public.vector, integer, bytea[], integer[], timestamptz[],
                                      bytea[]),
    pymem.get_chunks_v3(char, uuid, uuid[]),
    pymem.export_chunks_v3(char, uuid, integer[], uuid, integer, timestamptz[], text),
    pymem.put_chunks(char, uuid[], text[], text[], bytea[], bytea[], bytea[], integer[], public.vector[], smallint),
    pymem.get_chunks(char, uuid, uuid[]),
    pymem.search_chunks(char, uuid, public.vector, integer),
    pymem.search_chunks_on_standby(char, uuid, public.vector, integer),
    pymem.export_chunks(char, uuid, integer[], uuid, integer),
    pymem.data_keys_of(char),
    pymem.live_data_keys(char),
    pymem.live_data_key_digests(char),
    pymem.create_data_key(char, integer, text, bytea, boolean)
    TO pymem_app;

-- The maintainer: key rotation (which reads a tenant's rows through the same
-- intent protocol as the app), key registration, quarantine; audit retention
-- and re-baselines (pymem audit-retire, audit-rebaseline).
GRANT EXECUTE ON FUNCTION
    pymem.embedding_dim(),
    pymem.embedding_type(),
    pymem.search_digest(public.vector, integer),
    pymem.get_digest(uuid[]),
    pymem.export_digest(integer[], integer),
    pymem.read_intent(char, uuid, text, bytea),
    pymem.export_chunks_v2(char, uuid, integer[], uuid, integer),
    pymem.export_digest_v3(integer[], integer, timestamptz[], text),
    pymem.export_chunks_v3(char, uuid, integer[], uuid, integer, timestamptz[], text),
    pymem.export_chunks(char, uuid, integer[], uuid, integer),
    pymem.rekey_chunks_v2(char, uuid[], integer[], bytea[], bytea[], bytea[], bytea[], integer, smallint, bytea[]),
    pymem.rekey_chunks(char, uuid[], integer[], bytea[], bytea[], bytea[], integer, smallint),
    pymem.register_encryption_key(integer),
    pymem.tenants_with_keys(integer[]),
    pymem.key_usage(),
    pymem.quarantine_chunks(char, uuid[], text),
    pymem.quarantined(),
    pymem.enter_tenant(char, bytea),
    pymem.data_keys_of(char),
    pymem.live_data_keys(char),
    pymem.live_data_key_digests(char),
    pymem.create_data_key(char, integer, text, bytea, boolean),
    pymem.data_keys_to_rewrap(text, integer),
    pymem.rewrap_data_keys(char[], bytea[], integer[], text[], text, bytea[]),
    pymem.root_key_usage(),
    pymem.retire_root_key(text),
    pymem.audit_retire(char, bigint, bytea, bytea),
    pymem.audit_rebaseline(bytea)
    TO pymem_maintainer;

-- The auditor: verification, checkpoints, key counts. No content.
GRANT EXECUTE ON FUNCTION
    pymem.audit_verify(),
    pymem.audit_verify_v1(),
    pymem.audit_heads(),
    pymem.audit_row_hash(char, bigint),
    pymem.key_usage(),
    pymem.root_key_usage(),
    pymem.quarantined()
    TO pymem_auditor;

GRANT USAGE ON SCHEMA pymem TO pymem_app, pymem_auditor, pymem_maintainer;
GRANT SELECT ON pymem.audit_log, pymem.audit_log_v1, pymem.audit_chain_heads, pymem.audit_anchors TO pymem_auditor;
GRANT SELECT ON pymem.tuning, pymem.encryption_keys TO pymem_maintainer, pymem_auditor;
