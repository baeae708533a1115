-- Property: with no tenant context, or an empty one, the API sees and writes
-- nothing (fail closed). Committed seed data for alice and bob exists.
SET ROLE pymem_app;
-- Committed read intents (each its own autocommit statement), as the app commits them.
SELECT tests.intend('', 'search', pymem.search_digest('[1,0,0]', 100));
SELECT tests.intend('', 'get', pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid]));
SELECT tests.intend('', 'get', pymem.get_digest(ARRAY['bbbbbbbb-0000-0000-0000-000000000001'::uuid]));
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 100));
BEGIN;
SELECT plan(12);

SELECT is(nullif(current_setting('app.user_hash', true), ''), NULL, 'no tenant context in this transaction');
SELECT is_empty($$SELECT * FROM tests.search('[1,0,0]', 100)$$, 'missing context: search finds nothing');
SELECT is_empty($$SELECT * FROM tests.get('aaaaaaaa-0000-0000-0000-000000000001')$$,
                'missing context: get finds nothing');
SELECT is(pymem.delete_document('a1'), 0, 'missing context: delete_document deletes nothing');
SELECT is(pymem.erase_tenant(), 0, 'missing context: erase_tenant deletes nothing');
SELECT throws_ok($$SELECT tests.put(tests.tenant('alice'), gen_random_uuid(), 'x', '[1,1,1]')$$,
                 '42501', 'new row violates row-level security policy for table "memory_chunks"',
                 'missing context: put is rejected by RLS');

SELECT set_config('app.user_hash', '', true);
SELECT is_empty($$SELECT * FROM tests.search('[1,0,0]', 100)$$, 'empty context: search finds nothing');
SELECT is_empty($$SELECT * FROM tests.get('bbbbbbbb-0000-0000-0000-000000000001')$$,
                'empty context: get finds nothing');
SELECT is(pymem.delete_document('b1'), 0, 'empty context: delete_document deletes nothing');
SELECT is(pymem.erase_tenant(), 0, 'empty context: erase_tenant deletes nothing');
SELECT throws_ok($$SELECT tests.put(tests.tenant('bob'), gen_random_uuid(), 'x', '[1,1,1]')$$,
                 '42501', 'new row violates row-level security policy for table "memory_chunks"',
                 'empty context: put is rejected by RLS');

SELECT tests.act_as('alice');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 100)), 3::bigint,
          'control: with a context the seed data is there');

SELECT * FROM finish();
ROLLBACK;
