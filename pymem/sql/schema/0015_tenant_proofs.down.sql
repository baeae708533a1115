-- Undo 0015: the functions of 0014 go back, and with them the context without a proof.
-- The log is append-only: with a quarantine recorded, the old check cannot come back
-- and the downgrade fails whole.
DO $do$
BEGIN
    EXECUTE 'ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_operation_check1';
    EXECUTE $sql$ALTER TABLE pymem.audit_log ADD CONSTRAINT audit_log_operation_check1 CHECK (operation = ANY (ARRAY[
        'insert'::text, 'update'::text, 'delete'::text, 'truncate'::text, 'search'::text, 'get'::text,
        'export'::text]))$sql$;
END
$do$;
DROP FUNCTION IF EXISTS pymem.enter_tenant(char, bytea);
DROP FUNCTION IF EXISTS pymem.register_tenant_proofs(char[], bytea[]);
DROP FUNCTION IF EXISTS pymem.unregistered_tenants();
DROP FUNCTION IF EXISTS pymem.context_mac(char, bigint, bigint);
DROP FUNCTION IF EXISTS pymem.backend_gpid();
DROP FUNCTION IF EXISTS pymem.on_citus_worker();
DROP FUNCTION IF EXISTS pymem.keyed_digest(bytea);
DROP FUNCTION IF EXISTS pymem.seals_of(bytea);
DROP FUNCTION IF EXISTS pymem.count_keys(char, integer[], integer[], integer);
DROP FUNCTION IF EXISTS pymem.forwarded_ticket_ttl_us();
DROP TABLE pymem.context_key;
DROP TABLE pymem.tenant_proofs;
REVOKE SELECT ON public.alembic_version FROM pymem_auditor;
