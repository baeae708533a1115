-- Property: a tenant cannot insert, delete or erase another tenant's rows: a
-- call naming another tenant is refused, and its own calls cannot reach them.
SET ROLE pymem_app;
SELECT tests.intend('bob', 'search', pymem.search_digest('[1,0,0]', 100));
BEGIN;
SELECT plan(10);

SELECT tests.act_as('alice');
SELECT throws_ok($$SELECT tests.put(tests.tenant('bob'), gen_random_uuid(), 'evil', '[1,0,0]')$$,
                 '42501', 'pymem: the tenant argument is not the tenant context of this transaction',
                 'alice cannot insert a row with bob''s user_hash');
SELECT throws_ok($$SELECT pymem.delete_document(tests.tenant('bob'), 'b1')$$, '42501', NULL,
                 'alice cannot delete a document naming bob');
SELECT throws_ok($$SELECT pymem.erase_tenant(tests.tenant('bob'))$$, '42501', NULL,
                 'alice cannot erase bob');
SELECT is(tests.put(tests.tenant('alice'), 'aaaaaaaa-0000-0000-0000-0000000000ff', 'a9', '[0,0,1]'), 1,
          'control: alice can insert her own row');
SELECT is(pymem.delete_document(tests.me(), 'b1'), 0, 'alice: delete_document on bob''s doc id deletes nothing');
SELECT is(pymem.erase_tenant(tests.me()), 4, 'alice: erase_tenant removes exactly her 4 rows');
SELECT throws_ok($$UPDATE pymem.memory_chunks SET doc_id = 'x'$$, '42501', NULL,
                 'alice cannot UPDATE rows directly');

SELECT is_empty($$SELECT * FROM tests.rls_visible_ids()$$, 'alice: after her erase RLS shows her no row at all');

SELECT tests.act_as('bob');
SELECT is((SELECT count(*) FROM tests.search('[1,0,0]', 100)), 2::bigint,
          'bob still has both his rows after alice''s delete and erase');
SELECT is(pymem.delete_document(tests.me(), 'b1'), 2, 'control: bob can delete his own document');

SELECT * FROM finish();
ROLLBACK;
