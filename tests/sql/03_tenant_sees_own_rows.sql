-- Property: a tenant sees exactly its own rows through every read API, even when
-- another tenant's rows are nearer to the query.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0.1]', 100));
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0.1]', 1));
SELECT tests.intend('alice', 'get', pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000003'::uuid]));
SELECT tests.intend('alice', 'get', pymem.get_digest(ARRAY['bbbbbbbb-0000-0000-0000-000000000001'::uuid]));
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 100));
SELECT tests.intend('bob', 'get', pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000001'::uuid]));
SELECT tests.intend('carol', 'search', pymem.search_digest('[1,0,0]', 100));
BEGIN;
SELECT plan(10);

-- RLS alone first: on Citus a definer query on the coordinator may not follow
-- this transaction's delegated writes (the audit rows of the searches below).
SELECT tests.act_as('alice');
SELECT set_eq($$SELECT * FROM tests.rls_visible_ids()$$,
              $$VALUES ('aaaaaaaa-0000-0000-0000-000000000001'::uuid), ('aaaaaaaa-0000-0000-0000-000000000002'),
                       ('aaaaaaaa-0000-0000-0000-000000000003')$$,
              'alice: RLS alone shows the API''s role exactly her rows');
SELECT tests.act_as('bob');
SELECT is((SELECT count(*) FROM tests.rls_visible_ids()), 2::bigint, 'bob: RLS alone shows exactly his 2 rows');

SELECT tests.act_as('alice');
SELECT set_eq($$SELECT id FROM tests.search('[1,0,0.1]', 100)$$,
              $$VALUES ('aaaaaaaa-0000-0000-0000-000000000001'::uuid), ('aaaaaaaa-0000-0000-0000-000000000002'),
                       ('aaaaaaaa-0000-0000-0000-000000000003')$$,
              'alice: search returns all and only her chunks');
SELECT is((SELECT id FROM tests.search('[1,0,0.1]', 1)), 'aaaaaaaa-0000-0000-0000-000000000001'::uuid,
          'alice: nearest neighbour is hers, not bob''s exact match');
SELECT results_eq($$SELECT doc_id FROM tests.get('aaaaaaaa-0000-0000-0000-000000000003')$$,
                  $$VALUES ('a2')$$, 'alice: get returns her chunk');
SELECT is_empty($$SELECT * FROM tests.get('bbbbbbbb-0000-0000-0000-000000000001')$$,
                'alice: get of bob''s chunk id returns nothing');

SELECT tests.act_as('bob');
SELECT set_eq($$SELECT id FROM tests.search('[1,0,0]', 100)$$,
              $$VALUES ('bbbbbbbb-0000-0000-0000-000000000001'::uuid), ('bbbbbbbb-0000-0000-0000-000000000002')$$,
              'bob: search returns all and only his chunks');
SELECT is_empty($$SELECT * FROM tests.get('aaaaaaaa-0000-0000-0000-000000000001')$$,
                'bob: get of alice''s chunk id returns nothing');
SELECT is_empty($$SELECT * FROM tests.search('[1,0,0]', 100) WHERE doc_id LIKE 'a%'$$,
                'bob: no alice document appears in his results');

SELECT tests.act_as('carol');
SELECT is_empty($$SELECT * FROM tests.search('[1,0,0]', 100)$$, 'a tenant with no rows sees nothing');

SELECT * FROM finish();
ROLLBACK;
