-- Property: every API call leaves an audit row (reads and searches included), and
-- the audit log cannot be changed by the app or by the auditor.
SET ROLE pymem_app;
SELECT tests.intend('alice', 'search', pymem.search_digest('[1,0,0]', 2));
SELECT tests.intend('alice', 'get', pymem.get_digest(ARRAY['aaaaaaaa-0000-0000-0000-000000000003'::uuid]));
BEGIN;
SELECT plan(14);

SELECT ok(EXISTS (SELECT 1 FROM tests.audit_rows() WHERE phase = 'intent' AND operation = 'search'
                   AND user_hash = tests.tenant('alice')),
          'a read''s intent is in the tenant''s chain, committed before the read');
SELECT tests.act_as('alice');
SELECT * FROM tests.search('[1,0,0]', 2);
SELECT results_eq($$SELECT operation, phase, user_hash::text, row_count FROM tests.audit_rows()
                    WHERE txid = pg_current_xact_id() ORDER BY chain_pos$$,
                  $$VALUES ('search'::text, 'result'::text, tests.tenant('alice')::text, 2)$$,
                  'search leaves one result row with the tenant and the hit count');
SELECT * FROM tests.get('aaaaaaaa-0000-0000-0000-000000000003');
SELECT is((SELECT chunk_ids FROM tests.audit_rows() WHERE txid = pg_current_xact_id() AND operation = 'get'),
          ARRAY['aaaaaaaa-0000-0000-0000-000000000003'::uuid], 'get leaves an audit row naming the chunk');
SELECT tests.put(tests.tenant('alice'), 'aaaaaaaa-0000-0000-0000-0000000000aa', 'a7', '[0,1,1]');
SELECT is((SELECT chunk_ids FROM tests.audit_rows() WHERE txid = pg_current_xact_id() AND operation = 'insert'),
          ARRAY['aaaaaaaa-0000-0000-0000-0000000000aa'::uuid], 'put leaves an insert audit row');
SELECT tests.delete_document('a7');
SELECT is((SELECT row_count FROM tests.audit_rows() WHERE txid = pg_current_xact_id() AND operation = 'delete'),
          1, 'delete_document leaves a delete audit row');
SELECT tests.erase();
SELECT is((SELECT count(*) FROM tests.audit_rows() WHERE txid = pg_current_xact_id() AND operation = 'delete'),
          2::bigint, 'erase_tenant leaves another delete audit row');
SELECT tests.delete_document('no-such-doc');
SELECT ok(EXISTS (SELECT 1 FROM tests.audit_rows() WHERE txid = pg_current_xact_id()
                   AND operation = 'delete' AND row_count = 0 AND user_hash = tests.tenant('alice')),
          'a delete that matches nothing is audited too');
SELECT pymem.purge_expired(tests.tenant('alice'), ARRAY['aaaaaaaa-0000-0000-0000-0000000000ff'::uuid],
                           ARRAY[sha256('x')], ARRAY[sha256('x')]);
SELECT ok(EXISTS (SELECT 1 FROM tests.audit_rows() WHERE txid = pg_current_xact_id()
                   AND operation = 'purge' AND row_count = 0 AND user_hash = tests.tenant('alice')),
          'a purge (0022) is audited, also when it removes nothing');
SELECT is((SELECT count(*) FROM tests.audit_rows() WHERE txid = pg_current_xact_id()
             AND user_hash <> tests.tenant('alice')), 0::bigint, 'every row of alice''s calls is in her chain');
SELECT is(tests.audit_problems(), 0::bigint, 'the audit hash chains verify');

SELECT throws_ok($$UPDATE pymem.audit_log SET operation = 'get'$$, '42501', NULL, 'the app cannot UPDATE the audit log');
SELECT throws_ok($$DELETE FROM pymem.audit_log$$, '42501', NULL, 'the app cannot DELETE from the audit log');
SELECT throws_ok($$TRUNCATE pymem.audit_log$$, '42501', NULL, 'the app cannot TRUNCATE the audit log');
SELECT ok(NOT has_table_privilege('pymem_auditor', 'pymem.audit_log', 'UPDATE,DELETE,TRUNCATE,INSERT'),
          'the auditor can only read the audit log');

SELECT * FROM finish();
ROLLBACK;
