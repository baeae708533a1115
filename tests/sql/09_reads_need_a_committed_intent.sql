-- Property: no read returns rows without a committed, matching, unexpired read
-- intent in the caller's own chain, so rolling back a read cannot erase its trace.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 10));
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 10));
BEGIN;
SELECT plan(7);
SELECT tests.act_as('alice');

SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, gen_random_uuid(), '[1,0,0]', 10)$$, tests.me()),
                 '42501', 'pymem: no read intent with this ticket for this tenant', 'a search with no intent is refused');
SELECT tests.read_intent('cccccccc-0000-0000-0000-000000000001', 'search', pymem.search_digest('[1,0,0]', 10));
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, 'cccccccc-0000-0000-0000-000000000001', '[1,0,0]', 10)$$, tests.me()),
                 '42501', 'pymem: the read intent must be committed before the read',
                 'an intent written in the same transaction is refused');
SAVEPOINT s1;
SELECT tests.read_intent('cccccccc-0000-0000-0000-000000000002', 'search', pymem.search_digest('[1,0,0]', 10));
RELEASE SAVEPOINT s1;
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, 'cccccccc-0000-0000-0000-000000000002', '[1,0,0]', 10)$$, tests.me()),
                 '42501', 'pymem: the read intent must be committed before the read',
                 'an intent written in a released savepoint of this transaction is refused');
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, %L, '[0,1,0]', 10)$$,
                        tests.me(), tests.ticket('search', pymem.search_digest('[1,0,0]', 10))),
                 '42501', 'pymem: the read does not match its intent', 'a committed intent for another query is refused');
SELECT throws_ok(format($$SELECT * FROM pymem.get_chunks(%L, %L, ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid])$$,
                        tests.me(), tests.ticket('search', pymem.search_digest('[1,0,0]', 10))),
                 '42501', 'pymem: the read does not match its intent', 'a search intent does not authorise a get');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 10)), 3::bigint, 'control: the committed intent works');
-- Bob's committed intent is in bob's chain, not alice's.
CREATE TEMP TABLE bob_ticket AS
    SELECT t.ticket FROM tests.tickets t WHERE t.user_hash = tests.tenant('bob') AND t.operation = 'search' LIMIT 1;
SELECT throws_ok(format($$SELECT * FROM pymem.search_chunks(%L, %L, '[1,0,0]', 10)$$, tests.me(), (SELECT ticket FROM bob_ticket)),
                 '42501', 'pymem: no read intent with this ticket for this tenant',
                 'another tenant''s intent does not authorise alice');

SELECT * FROM finish();
ROLLBACK;
