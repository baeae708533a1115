-- Property: pymem_app has no direct table privileges and cannot reach the audit
-- log or the internal functions; its only door is the SQL API.
BEGIN;
SET LOCAL ROLE pymem_app;
SELECT plan(22);

SELECT table_privs_are('pymem', 'memory_chunks', 'pymem_app', ARRAY[]::text[],
                       'pymem_app has no privilege on memory_chunks');
SELECT table_privs_are('pymem', 'audit_log', 'pymem_app', ARRAY[]::text[],
                       'pymem_app has no privilege on audit_log');
SELECT tests.act_as('alice');
SELECT throws_ok($$SELECT * FROM pymem.memory_chunks$$, '42501', 'permission denied for table memory_chunks',
                 'direct SELECT on memory_chunks is denied');
SELECT throws_ok($$INSERT INTO pymem.memory_chunks (id) VALUES (gen_random_uuid())$$, '42501', NULL,
                 'direct INSERT is denied');
SELECT throws_ok($$UPDATE pymem.memory_chunks SET source = 'x'$$, '42501', NULL, 'direct UPDATE is denied');
SELECT throws_ok($$DELETE FROM pymem.memory_chunks$$, '42501', NULL, 'direct DELETE is denied');
SELECT throws_ok($$SELECT * FROM pymem.audit_log$$, '42501', 'permission denied for table audit_log',
                 'audit_log is not readable by the app');
SELECT throws_ok($$SELECT pymem.audit_append(repeat('0', 64), 'get', 'write', NULL, NULL, '{}')$$, '42501', NULL,
                 'internal audit_append is not callable');
SELECT throws_ok($$SELECT * FROM pymem.audit_verify()$$, '42501', NULL,
                 'audit_verify is for the auditor, not the app');
-- The internal building blocks of 0006: the search without its intent check, the
-- delete of every row (NULL doc id), the key counters.
SELECT ok(NOT has_function_privilege('pymem_app', 'pymem.search_rows(char, public.vector, integer)', 'EXECUTE')
          AND NOT has_function_privilege('pymem_app', 'pymem.delete_chunks(char, text)', 'EXECUTE')
          AND NOT has_function_privilege('pymem_app', 'pymem.count_keys(char, integer[], integer[], integer)', 'EXECUTE'),
          'the app cannot call search_rows, delete_chunks or count_keys');
SELECT ok(has_function_privilege('pymem_app', 'pymem.search_chunks(char, uuid, public.vector, integer)', 'EXECUTE'),
          'the app can execute search_chunks');
SELECT ok(NOT has_function_privilege('public', 'pymem.search_chunks(char, uuid, public.vector, integer)', 'EXECUTE'),
          'PUBLIC cannot execute search_chunks');
SELECT ok(NOT has_schema_privilege('pymem_app', 'pymem', 'CREATE'), 'the app cannot create objects in pymem');

-- Keyword postings (0021): no privilege, and the functions that read and write them are
-- internal (only the definer search and write functions call them).
SELECT table_privs_are('pymem', 'memory_terms', 'pymem_app', ARRAY[]::text[],
                       'pymem_app has no privilege on memory_terms');
SELECT throws_ok($$SELECT * FROM pymem.memory_terms$$, '42501', 'permission denied for table memory_terms',
                 'direct SELECT on memory_terms is denied');
SELECT throws_ok($$SELECT * FROM pymem.keyword_hits_v2(repeat('a', 64), ARRAY['\x00000000000000000000000000000000'::bytea],
                                                        '{}', '{}', '{}', 10)$$,
                 '42501', NULL, 'the internal keyword search is not executable by pymem_app');
SELECT throws_ok($$SELECT pymem.put_terms(repeat('a', 64), ARRAY[gen_random_uuid()], ARRAY['\x'::bytea])$$,
                 '42501', NULL, 'the internal postings writer is not executable by pymem_app');

-- Revision 0022's internal functions: the search, its parts, and the fused search. Only
-- the audited API functions call them.
SELECT throws_ok($$SELECT * FROM pymem.search_rows_v3(repeat('a', 64), NULL, 3, '{}', '{}', '{}')$$,
                 '42501', NULL, 'the internal search (0022) is not executable by pymem_app');
SELECT throws_ok($$SELECT * FROM pymem.filtered_nearest_v2(repeat('a', 64), NULL, 3, '{}', '{}', 0, '{}', 10)$$,
                 '42501', NULL, 'the internal exact filtered search is not executable by pymem_app');
SELECT throws_ok($$SELECT pymem.solo_graph_walk_v2(repeat('a', 64))$$,
                 '42501', NULL, 'the internal solo-graph walk is not executable by pymem_app');
SELECT throws_ok($$SELECT * FROM pymem.hybrid_rows_v2(repeat('a', 64), NULL, 3, '{}', '{}', '{}', NULL)$$,
                 '42501', NULL, 'the internal fused search is not executable by pymem_app');
SELECT throws_ok($$SELECT pymem.row_in_window(now(), now(), NULL, '{}')$$,
                 '42501', NULL, 'the internal expiry and window test is not executable by pymem_app');

SELECT * FROM finish();
ROLLBACK;
