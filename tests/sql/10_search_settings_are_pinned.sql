-- Property: no caller setting changes which rows search examines. The attack:
-- exact_search_max_rows = 0 and hnsw.max_scan_tuples = 1 pushed a small tenant
-- onto the shared HNSW index, where whether its own rows came back revealed how
-- dense other tenants' data is near a point.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[0,1,0.1]', 10));
BEGIN;
SELECT plan(3);
SELECT tests.act_as('alice');
SET LOCAL pymem.exact_search_max_rows = 0;
SET LOCAL hnsw.max_scan_tuples = 1;
SET LOCAL hnsw.ef_search = 1;
SET LOCAL hnsw.iterative_scan = off;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_tidscan = off;
SET LOCAL enable_nestloop = off;
SET LOCAL plan_cache_mode = force_custom_plan;
SET LOCAL row_security = off;
SELECT is((SELECT count(*) FROM tests.search('[0,1,0.1]', 10)), 3::bigint,
          'with hostile settings alice still gets all 3 of her rows (the exact path)');
SELECT is((SELECT array_agg(id ORDER BY distance) FROM tests.search('[0,1,0.1]', 10)),
          ARRAY['aaaaaaaa-0000-0000-0000-000000000003', 'aaaaaaaa-0000-0000-0000-000000000002',
                'aaaaaaaa-0000-0000-0000-000000000001']::uuid[],
          'in exact distance order');
SELECT throws_ok($$UPDATE pymem.tuning SET exact_search_max_rows = 0$$, '42501', NULL,
                 'the app cannot change the tuning knobs');
SELECT * FROM finish();
ROLLBACK;
