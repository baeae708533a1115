-- Property: with no tenant context, or an empty one, the API reads and writes
-- nothing (fail closed): every call is refused, even one naming a tenant whose
-- committed read intent exists. Committed seed data for alice and bob exists.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 100));
SELECT tests.intend('alice', 'get', pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid]));
BEGIN;
SELECT plan(15);

SELECT is(tests.me(), NULL, 'no tenant context in this transaction');
SELECT is_empty($$SELECT * FROM tests.rls_visible_ids()$$, 'missing context: RLS shows the API''s role no row');
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, %L, '[1,0,0]', 100)$$, tests.tenant('alice'),
                        tests.ticket_of('alice', 'search', pymem.search_digest('[1,0,0]', 100))),
                 '42501', 'pymem: the tenant argument is not the tenant context of this transaction',
                 'missing context: a search naming alice, with her committed intent, is refused');
SELECT throws_ok(format($$SELECT * FROM pymem.get_chunks(%L, %L, ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid])$$,
                        tests.tenant('alice'), tests.ticket_of('alice', 'get',
                            pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid]))),
                 '42501', NULL, 'missing context: get naming alice is refused');
SELECT throws_ok($$SELECT tests.delete_document('a1', tests.tenant('alice'))$$, '42501', NULL,
                 'missing context: delete_document is refused');
SELECT throws_ok($$SELECT tests.erase(tests.tenant('alice'))$$, '42501', NULL,
                 'missing context: erase_tenant is refused');
SELECT throws_ok($$SELECT tests.put(tests.tenant('alice'), gen_random_uuid(), 'x', '[1,1,1]')$$, '42501', NULL,
                 'missing context: put is refused');
SELECT throws_ok($$SELECT tests.read_intent(gen_random_uuid(), 'search', pymem.search_digest('[1,0,0]', 100),
                                             tests.tenant('alice'))$$, '42501', NULL,
                 'missing context: a read intent is refused');
SELECT throws_ok($$SELECT * FROM tests.search('[1,0,0]', 100)$$, '42501', NULL,
                 'missing context: a search naming no tenant is refused');

SELECT tests.act_as('');
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, %L, '[1,0,0]', 100)$$, tests.tenant('alice'),
                        tests.ticket_of('alice', 'search', pymem.search_digest('[1,0,0]', 100))),
                 '42501', NULL, 'empty context: a search naming alice is refused');
SELECT throws_ok($$SELECT tests.delete_document('b1', tests.tenant('bob'))$$, '42501', NULL,
                 'empty context: delete_document is refused');
SELECT throws_ok($$SELECT tests.erase(tests.tenant('bob'))$$, '42501', NULL,
                 'empty context: erase_tenant is refused');
SELECT throws_ok($$SELECT tests.put(tests.tenant('bob'), gen_random_uuid(), 'x', '[1,1,1]')$$, '42501', NULL,
                 'empty context: put is refused');
SELECT throws_ok($$SELECT tests.erase(NULL)$$, '42501', NULL, 'empty context: a NULL tenant is refused');

SELECT tests.act_as('alice');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 100)), 3::bigint,
          'control: with a context the seed data is there');

SELECT * FROM finish();
ROLLBACK;
