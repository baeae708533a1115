-- Property: a tenant cannot insert, delete or erase another tenant's rows: a
-- call naming another tenant is refused, and its own calls cannot reach them.
SET ROLE pymem_app;
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 100));
BEGIN;
SELECT plan(10);

SELECT tests.act_as('alice');
-- RLS alone first (on Citus a definer query may not follow this transaction's delegated writes).
SELECT is((SELECT count(*) FROM tests.rls_visible_ids()), 3::bigint, 'alice: RLS alone shows the API''s role her 3 rows');
SELECT throws_ok($$SELECT tests.put(tests.tenant('bob'), gen_random_uuid(), 'evil', '[1,0,0]')$$,
                 '42501', 'pymem: the tenant argument is not the tenant context of this transaction',
                 'alice cannot insert a row with bob''s user_hash');
SELECT throws_ok($$SELECT tests.delete_document('b1', tests.tenant('bob'))$$, '42501', NULL,
                 'alice cannot delete a document naming bob');
SELECT throws_ok($$SELECT tests.erase(tests.tenant('bob'))$$, '42501', NULL,
                 'alice cannot erase bob');
SELECT is(tests.put(tests.tenant('alice'), 'aaaaaaaa-0000-0000-0000-0000000000ff', 'a9', '[0,0,1]'), 1,
          'control: alice can insert her own row');
SELECT is(tests.delete_document('b1'), 0, 'alice: delete_document on bob''s doc id deletes nothing');
SELECT is(tests.erase(), 4, 'alice: erase_tenant removes exactly her 4 rows');
SELECT throws_ok($$UPDATE pymem.memory_chunks SET doc_id = 'x'$$, '42501', NULL,
                 'alice cannot UPDATE rows directly');

SELECT tests.act_as('bob');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 100)), 2::bigint,
          'bob still has both his rows after alice''s delete and erase');
SELECT is(tests.delete_document('b1'), 2, 'control: bob can delete his own document');

SELECT * FROM finish();
ROLLBACK;
