-- Property: every table in schema pymem has RLS enabled AND forced, is owned by
-- the non-superuser pymem_owner, and the app role cannot bypass RLS.
BEGIN;
SET LOCAL ROLE pymem_app;
SELECT plan(13);

SELECT ok((SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'pymem' AND c.relkind IN ('r', 'p')) >= 2,
          'schema pymem has its tables');
SELECT is_empty($$SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'pymem' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity$$,
                'RLS is enabled on every table in pymem');
SELECT is_empty($$SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'pymem' AND c.relkind IN ('r', 'p') AND NOT c.relforcerowsecurity$$,
                'RLS is forced on every table in pymem');
SELECT is_empty($$SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'pymem' AND c.relkind IN ('r', 'p')
                     AND pg_get_userbyid(c.relowner) <> 'pymem_owner'$$,
                'every table is owned by pymem_owner');
SELECT policies_are('pymem', 'memory_chunks', ARRAY['tenant_isolation'], 'memory_chunks has exactly the tenant policy');
SELECT policy_roles_are('pymem', 'memory_chunks', 'tenant_isolation', ARRAY['pymem_app', 'pymem_owner'],
                        'the tenant policy binds the app and the definer (owner)');
-- Tenant data keys (0019): the owner's definer functions alone reach them, none of the app's roles.
SELECT policies_are('pymem', 'data_keys', ARRAY['data_keys_owner'], 'data_keys has the owner''s policy only');
SELECT policy_roles_are('pymem', 'data_keys', 'data_keys_owner', ARRAY['pymem_owner'],
                        'the data_keys policy binds the definer (owner) alone');
-- Keyword postings (0021): the tenant policy, binding the definer (owner) alone.
SELECT policies_are('pymem', 'memory_terms', ARRAY['tenant_isolation'], 'memory_terms has exactly the tenant policy');
SELECT policy_roles_are('pymem', 'memory_terms', 'tenant_isolation', ARRAY['pymem_owner'],
                        'the memory_terms policy binds the definer (owner) alone');
SELECT ok(NOT rolsuper AND NOT rolbypassrls, 'pymem_owner is neither superuser nor BYPASSRLS')
  FROM pg_roles WHERE rolname = 'pymem_owner';
SELECT ok(NOT rolsuper AND NOT rolbypassrls AND NOT rolcanlogin, 'pymem_app is NOLOGIN, NOSUPERUSER, NOBYPASSRLS')
  FROM pg_roles WHERE rolname = 'pymem_app';
-- As pymem_app (SET ROLE), or as a login that inherits pymem_app and nothing else.
SELECT ok(pg_has_role('pymem_app', 'USAGE') AND NOT pg_has_role('pymem_owner', 'USAGE')
          AND NOT pg_has_role('pymem_maintainer', 'USAGE') AND NOT pg_has_role('pymem_auditor', 'USAGE')
          AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
          'this file runs with pymem_app''s privileges and no other pymem role');

SELECT * FROM finish();
ROLLBACK;
