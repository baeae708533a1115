-- Property: knowing a tenant's hash is not enough to act as it. The context is
-- made by pymem.enter_tenant with the tenant's proof (which only a holder of the
-- app's HMAC key can compute); a context set by hand, a wrong proof, a forged or
-- an old ticket are all refused by every API call, and the app cannot read the
-- proofs' digests or the ticket key.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 10));
BEGIN;
SELECT tests.act_as('alice');
SELECT current_setting('app.tenant_ticket') AS old_ticket \gset
COMMIT;

BEGIN;
SET LOCAL ROLE pymem_app;
SELECT plan(11);

SET LOCAL app.user_hash = '2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90';
SELECT throws_ok($$SELECT * FROM tests.search('[1,0,0]', 10)$$, '42501', NULL,
                 'a hash set by hand (alice''s) does not make the transaction alice''s');
SELECT throws_ok($$SELECT tests.erase()$$, '42501', NULL, 'nor lets it erase her');

SELECT throws_ok(format($$SELECT pymem.enter_tenant(%L, %L)$$, tests.tenant('alice'), tests.proof('mallory')),
                 '42501', 'pymem: wrong tenant proof', 'a wrong proof is refused');

SELECT set_config('app.tenant_ticket', :'old_ticket', true);
SELECT set_config('app.user_hash', tests.tenant('alice'), true);
SELECT throws_ok($$SELECT * FROM tests.search('[1,0,0]', 10)$$, '42501', NULL,
                 'a ticket from an earlier transaction of the same backend is refused');

SELECT set_config('app.tenant_ticket',
                  concat_ws('.', pg_backend_pid(), (extract(epoch FROM now()) * 1000000)::bigint, repeat('0', 64)),
                  true);
SELECT throws_ok($$SELECT * FROM tests.search('[1,0,0]', 10)$$, '42501', NULL,
                 'a ticket naming this backend and transaction with a forged MAC is refused');

SELECT throws_ok($$SELECT * FROM pymem.tenant_proofs$$, '42501', NULL, 'the app cannot read the proof digests');
SELECT throws_ok($$SELECT * FROM pymem.context_key$$, '42501', NULL, 'nor the ticket key');
SELECT throws_ok(format($$SELECT pymem.context_mac(%L, 1, 1)$$, tests.tenant('alice')), '42501', NULL,
                 'nor compute a ticket''s MAC');
SELECT throws_ok($$SELECT pymem.register_tenant_proofs(ARRAY[repeat('a', 64)]::char(64)[], ARRAY[sha256('x')])$$,
                 '42501', NULL, 'nor register proofs');

SELECT tests.act_as('alice');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 10)), 3::bigint,
          'control: alice''s proof makes the transaction hers');
SELECT tests.act_as('bob');
SELECT throws_ok($$SELECT tests.erase(tests.tenant('alice'))$$, '42501', NULL,
                 'entering bob does not let the transaction act as alice');
SELECT * FROM finish();
ROLLBACK;
