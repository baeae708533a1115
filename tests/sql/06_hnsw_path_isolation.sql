-- Property: on the HNSW path, search still returns only the current tenant's rows.
-- tests.force_hnsw_path(true) (a test-only owner function; undone at the end of
-- the file) sets pymem.tuning.exact_search_max_rows = 0, sending every tenant down
-- search_chunks' HNSW branch (03 covers the default, exact branch for small
-- tenants); seqscan and sort are off so the plain query below uses the index too.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0.1]', 10));
SELECT tests.intend('alice', 'search', pymem.search_digest('[0,0,1]', 2));
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 10));
SELECT tests.force_hnsw_path(true);
BEGIN;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_sort = off;
SELECT plan(6);

SELECT is((SELECT count(*) FROM pg_catalog.pg_indexes
            WHERE schemaname = 'pymem' AND tablename = 'memory_chunks'
              AND indexname ~ '^memory_chunks_embedding_hnsw_[0-9]+$' AND indexdef ~ 'USING hnsw'),
          64::bigint, 'the 64 bucket HNSW indexes exist');
SELECT tests.act_as('alice');
SELECT matches(tests.search_plan('[1,0,0]'), 'memory_chunks_embedding_hnsw_[0-9]+',
               'the search query is planned through the tenant''s bucket HNSW index');
SELECT set_eq($$SELECT id FROM tests.search('[1,0,0.1]', 10)$$,
              $$VALUES ('aaaaaaaa-0000-0000-0000-000000000001'::uuid), ('aaaaaaaa-0000-0000-0000-000000000002'),
                       ('aaaaaaaa-0000-0000-0000-000000000003')$$,
              'index path: alice gets only her rows');
SELECT is((SELECT count(*) FROM tests.search('[0,0,1]', 2)), 2::bigint,
          'index path: k is honoured within the tenant');
SELECT tests.act_as('bob');
SELECT is_empty($$SELECT * FROM tests.search('[1,0,0]', 10) WHERE id::text LIKE 'aaaaaaaa%'$$,
                'index path: bob never gets alice''s rows');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 10)), 2::bigint,
          'index path: bob gets his two rows');

SELECT * FROM finish();
ROLLBACK;
SELECT tests.force_hnsw_path(false);
