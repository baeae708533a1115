-- Property: the tenant context is transaction-local. After a transaction that set
-- it commits or rolls back, the next transaction on the same connection sees nothing.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 10));
BEGIN;
SELECT tests.act_as('alice');
SELECT count(*) FROM tests.search('[1,0,0]', 10);
COMMIT;

BEGIN;
SET LOCAL ROLE pymem_app;
SELECT tests.act_as('bob');
ROLLBACK;

BEGIN;
SET LOCAL ROLE pymem_app;
SELECT plan(4);
SELECT is(coalesce(current_setting('app.user_hash', true), ''), '',
          'after commit and rollback the setting is gone');
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, %L, '[1,0,0]', 10)$$, tests.tenant('alice'),
                        tests.ticket_of('alice', 'search', pymem.search_digest('[1,0,0]', 10))),
                 '42501', NULL, 'the next transaction cannot search as the previous tenant');
SELECT throws_ok($$SELECT tests.erase(tests.tenant('bob'))$$, '42501', NULL, 'and can erase nothing');
SELECT tests.act_as('alice');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 10)), 3::bigint,
          'control: setting the context again in this transaction works');
SELECT * FROM finish();
ROLLBACK;
