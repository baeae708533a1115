-- Property: a tenant cannot insert rows for another tenant (exact RLS error),
-- and cannot update or delete another tenant's rows.
SET ROLE pymem_app;
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 100));
BEGIN;
SELECT plan(7);

SELECT tests.act_as('alice');
SELECT throws_ok($$SELECT tests.put(tests.tenant('bob'), gen_random_uuid(), 'evil', '[1,0,0]')$$,
                 '42501', 'new row violates row-level security policy for table "memory_chunks"',
                 'alice cannot insert a row with bob''s user_hash');
SELECT is(tests.put(tests.tenant('alice'), 'aaaaaaaa-0000-0000-0000-0000000000ff', 'a9', '[0,0,1]'), 1,
          'control: alice can insert her own row');
SELECT is(pymem.delete_document('b1'), 0, 'alice: delete_document on bob''s doc id deletes nothing');
SELECT is(pymem.erase_tenant(), 4, 'alice: erase_tenant removes exactly her 4 rows');
SELECT throws_ok($$UPDATE pymem.memory_chunks SET doc_id = 'x'$$, '42501', NULL,
                 'alice cannot UPDATE rows directly');

SELECT tests.act_as('bob');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 100)), 2::bigint,
          'bob still has both his rows after alice''s delete and erase');
SELECT is(pymem.delete_document('b1'), 2, 'control: bob can delete his own document');

SELECT * FROM finish();
ROLLBACK;
