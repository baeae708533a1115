"""A4 of the second attack round: old ciphertexts replay.

A sealed field's AAD binds tenant, row, field and labels, not a time, so an older
copy of a row still opens. Each attack here is made the way the round made it, as a
superuser without the keys (or a login with the keys and the maintainer's re-keying),
shown to succeed on read, and then reported by ``verify_rows`` (``pymem verify-rows``),
which checks every live row against the write record its latest audited write left
(revision 0016, :mod:`pymem.freshness`).
"""

from __future__ import annotations

import uuid

import pytest

from pymem import repository as repo
from pymem.chunks import seal_row
from pymem.errors import KeyDestroyed
from pymem.freshness import verify_rows
from pymem.repository import ChunkInput
from pymem.rotation import rotate_encryption_key
from pymem.security import AAD_VERSION, hmac_user, keyring
from pymem.tenant import enter_tenant_call
from pymem.tenant_keys import TenantKeys
from pymem.write_records import stored_record
from tests.utils import vec

pytestmark = pytest.mark.citus

_COLUMNS = ("id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, meta_tags, key_id,"
            " embedding, aad_version, expires_at")
# As the reads return rows (revision 0022's: the timestamps last, the expiry AAD v3 binds among them).
_EXPORTED = ("id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher,"
             " created_at, updated_at, expires_at")


@pytest.fixture(scope="module")
def admin_url(server) -> str:
    return server.fresh_database("pymem_freshness", embedding_dim=384)


@pytest.fixture(scope="module")
def app_url(server, admin_url) -> str:
    server.login_role("pymem_freshness_app", ["pymem_app"])
    return server.url("pymem_freshness", user="pymem_freshness_app")


@pytest.fixture
def tenant() -> str:
    return f"freshness-{uuid.uuid4()}"


async def _write(aconn, tenant: str, text: str, ids=("a", "b")) -> None:
    await repo.upsert_memory_chunks(aconn, tenant, [ChunkInput("d", "s", f"{text} {i}", vec(n + 1), {"v": text}, id=i)
                                                    for n, i in enumerate(ids)])


def _copy(admin_conn, user_hash: str) -> list[tuple]:
    """The tenant's rows as a dump holds them."""
    return admin_conn.execute(f"SELECT {_COLUMNS} FROM pymem.memory_chunks WHERE user_hash = %s ORDER BY id",
                              (user_hash,)).fetchall()


def _put_back(admin_conn, rows: list[tuple], *, triggers: bool) -> None:
    """Insert copied rows, replacing live ones of the same id; with the audit triggers
    off (``session_replication_role = replica``) unless ``triggers``."""
    with admin_conn.transaction():
        if not triggers:
            admin_conn.execute("SET LOCAL session_replication_role = replica")
        for row in rows:
            admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s", (row[1], row[0]))
            admin_conn.execute(f"INSERT INTO pymem.memory_chunks ({_COLUMNS}) VALUES"
                               f" ({', '.join(['%s'] * len(row))})", row)


def _problems(admin_conn, user_hash: str) -> dict:
    report = verify_rows(admin_conn, [user_hash])
    return {(p.row_id, p.problem.split(" (")[0]) for p in report.problems}


def _row_id(user_hash: str, external_id: str) -> uuid.UUID:
    return keyring().tenant_index(user_hash).row_id(external_id)


async def test_every_row_of_an_untouched_tenant_verifies_after_writes_upserts_deletes_and_a_rotation(
        own_db, tenant):
    aconn, admin_conn = own_db
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "first", ids=("a", "b", "c"))
    await _write(aconn, tenant, "second", ids=("a",))
    await repo.delete_memory_chunks(aconn, tenant, ["b"])
    await rotate_encryption_key(admin_conn, every_row=True)
    report = verify_rows(admin_conn, [user_hash])
    assert report.problems == [] and report.rows_checked == 2 and report.unbound == 0


async def test_a_row_restored_from_an_older_copy_opens_but_is_reported(aconn, admin_conn, tenant, second_round):
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "old")
    older = [r for r in _copy(admin_conn, user_hash) if r[0] == _row_id(user_hash, "a")]
    await _write(aconn, tenant, "new")
    _put_back(admin_conn, older, triggers=False)
    hits = await repo.get_memory_chunks(aconn, tenant, ["a", "b"])
    assert sorted(h.text for h in hits) == ["new b", "old a"]  # the attack works on read: the older copy opens
    assert _problems(admin_conn, user_hash) == {(older[0][0], "not what its latest audited write wrote")}
    second_round("A4: a row restored from an older copy")


@pytest.mark.parametrize("triggers", [False, True], ids=["triggers off", "triggers on"])
async def test_erased_rows_put_back_from_a_copy_are_reported(aconn, admin_conn, tenant, triggers, second_round):
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "erased")
    copy = _copy(admin_conn, user_hash)
    await repo.erase_user(aconn, tenant)
    _put_back(admin_conn, copy, triggers=triggers)
    with pytest.raises(KeyDestroyed):  # since 0019: erasure destroyed the key they were sealed under
        await repo.get_memory_chunks(aconn, tenant, ["a", "b"])
    expected = ("last written by direct DML, outside pymem's API" if triggers
                else "removed by an audited delete or erase, yet live")
    assert _problems(admin_conn, user_hash) == {(r[0], expected) for r in copy}
    second_round("A4: erased rows re-inserted")


async def test_a_row_re_keyed_back_to_its_old_ciphertext_is_reported(aconn, admin_conn, tenant, second_round):
    """A login with the keys and re-keying rights (the maintainer's) installs an older
    ciphertext through rekey_chunks_v2, with the record that ciphertext had."""
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "old", ids=("a",))
    old = admin_conn.execute(f"SELECT {_EXPORTED} FROM pymem.memory_chunks WHERE user_hash = %s",
                             (user_hash,)).fetchone()
    await _write(aconn, tenant, "new", ids=("a",))
    record = stored_record(keyring().tenant_index(user_hash), old)
    with admin_conn.transaction():
        admin_conn.execute(*enter_tenant_call(user_hash))
        admin_conn.execute("SELECT pymem.rekey_chunks_v2(%s, %s, %s, %s, %s, %s, %s, %s, %s::smallint, %s)",
                           (user_hash, [old[0]], [old[6]], [old[3]], [old[4]], [old[5]], [old[9]], old[6],
                            AAD_VERSION, [record]))
    [hit] = await repo.get_memory_chunks(aconn, tenant, ["a"])
    assert hit.text == "old a"  # rolled back, and it opens
    assert _problems(admin_conn, user_hash) == {(old[0], "a write record appears twice in the chain")}
    second_round("A4: metadata rolled back with rekey_chunks_v2")


async def test_an_old_write_replayed_into_the_log_for_a_restored_row_is_reported(aconn, admin_conn, tenant,
                                                                                 second_round):
    """The superuser also appends an audit row naming the older copy's record (the
    log's chain hashes are unkeyed, so it can): the record is then in the chain twice."""
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "old", ids=("a",))
    older = _copy(admin_conn, user_hash)
    old_record = stored_record(keyring().tenant_index(user_hash), admin_conn.execute(
        f"SELECT {_EXPORTED} FROM pymem.memory_chunks WHERE user_hash = %s", (user_hash,)).fetchone())
    await _write(aconn, tenant, "new", ids=("a",))
    _put_back(admin_conn, older, triggers=False)
    with admin_conn.transaction():
        admin_conn.execute("SELECT pymem.audit_append(%s, 'update', 'write', NULL, %s, %s)",
                           (user_hash, old_record, [older[0][0]]))
    assert _problems(admin_conn, user_hash) == {(older[0][0], "a write record appears twice in the chain")}
    second_round("A4: an old write replayed into the audit log")


async def test_a_row_removed_without_an_audited_delete_is_reported(aconn, admin_conn, tenant):
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "kept")
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
                           (user_hash, _row_id(user_hash, "a")))
    assert _problems(admin_conn, user_hash) == {(_row_id(user_hash, "a"), "written and never deleted, yet missing")}


async def test_a_row_last_written_without_a_record_is_unbound_until_rotate_all_re_seals_it(own_db, tenant):
    """How a row written before revision 0016 looks: its write has no record (made
    here by sealing the row with the keys, inserting it with the triggers off and
    auditing an insert without records, in a chain that has none yet)."""
    aconn, admin_conn = own_db
    user_hash = hmac_user(tenant)
    index = keyring().tenant_index(user_hash)
    row = seal_row(user_hash, index, ChunkInput("d", "s", "legacy", vec(1)), 384, 10_000,
                   TenantKeys(user_hash, None, 0), keyring().active_key_id)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("INSERT INTO pymem.memory_chunks (id, user_hash, doc_id, source, text_cipher, meta_cipher,"
                           " emb_cipher, key_id, embedding, aad_version) VALUES (%s, %s, 'd', 's', %s, %s, %s, %s,"
                           " %s, %s)", (row.id, user_hash, row.text_cipher, row.meta_cipher, row.emb_cipher,
                                        keyring().active_key_id, row.embedding, AAD_VERSION))
    with admin_conn.transaction():  # its own transaction: Citus will not mix the two users' shard writes
        admin_conn.execute("SELECT pymem.audit_append(%s, 'insert', 'write', NULL, NULL, %s)", (user_hash, [row.id]))
    with admin_conn.transaction():
        admin_conn.execute("INSERT INTO pymem.key_stats (key_id, user_hash, live_rows, seals) VALUES (%s, %s, 1, 3)",
                           (keyring().active_key_id, user_hash))
    report = verify_rows(admin_conn, [user_hash])
    assert report.problems == [] and report.unbound == 1
    assert [h.text for h in await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False)] == ["legacy"]
    await rotate_encryption_key(admin_conn, every_row=True)
    report = verify_rows(admin_conn, [user_hash])
    assert report.problems == [] and report.unbound == 0 and report.rows_checked == 1


async def test_an_export_function_replaced_to_hide_a_put_back_row_fails_the_verification(own_db, tenant,
                                                                                        second_round):
    """verify_rows reads rows through export_chunks_v3: a superuser who makes it skip the
    resurrected rows (while searches and gets still return them) changes the schema."""
    aconn, admin_conn = own_db
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "erased")
    copy = _copy(admin_conn, user_hash)
    await repo.erase_user(aconn, tenant)
    _put_back(admin_conn, copy, triggers=False)
    definition = admin_conn.execute("SELECT pg_catalog.pg_get_functiondef('pymem.export_chunks_v3(char, uuid,"
                                    " integer[], uuid, integer, timestamptz[], text)'::pg_catalog.regprocedure)"
                                    ).fetchone()[0]
    admin_conn.execute(definition.replace("WHERE c.user_hash = p_user_hash",
                                          "WHERE c.user_hash = p_user_hash AND false"))
    problems = [p.problem for p in verify_rows(admin_conn, [user_hash]).problems]
    assert problems and all(p.startswith("schema: function definitions") for p in problems)
    second_round("A4: erased rows re-inserted")


async def test_a_bound_row_made_to_look_older_than_write_records_is_reported(aconn, admin_conn, tenant,
                                                                            second_round):
    """The superuser appends a write without records for the row (how a write before
    0016 looks), then restores the older copy: the forged row is reported."""
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "old", ids=("a",))
    older = _copy(admin_conn, user_hash)
    await _write(aconn, tenant, "new", ids=("a",))
    with admin_conn.transaction():
        admin_conn.execute("SELECT pymem.audit_append(%s, 'update', 'write', NULL, NULL, %s)",
                           (user_hash, [older[0][0]]))
    _put_back(admin_conn, older, triggers=False)
    report = verify_rows(admin_conn, [user_hash])
    assert {(p.row_id, p.problem.split(" (")[0]) for p in report.problems} == {
        (older[0][0], "a write without a write record after the chain had records")}
    second_round("A4: a row restored from an older copy")


def _forge_audit_row(admin_conn, user_hash: str, operation: str, digest: bytes | None, chunk_ids: list,
                     row_count: int) -> None:
    """Append a write's audit row by INSERT, as a superuser can: any row count, a valid
    hash (the shipped digest function), the chain head moved along."""
    admin_conn.execute("""
        WITH h AS (SELECT * FROM pymem.audit_chain_heads WHERE user_hash = %(u)s FOR UPDATE),
             r AS (SELECT h.chain_pos + 1 AS pos, clock_timestamp() AS at, session_user::text AS role,
                          pg_current_xact_id() AS txid, h.row_hash AS prev FROM h),
             ins AS (
               INSERT INTO pymem.audit_log (user_hash, chain_pos, at, db_role, operation, phase, ticket,
                                            params_digest, chunk_ids, row_count, txid, prev_hash, row_hash)
               SELECT %(u)s, r.pos, r.at, r.role, %(op)s, 'write', NULL, %(d)s, %(ids)s::uuid[], %(n)s, r.txid,
                      r.prev, pymem.audit_row_digest(r.prev, %(u)s, r.pos, r.at, r.role, %(op)s, 'write', NULL,
                                                     %(d)s, %(ids)s::uuid[], %(n)s, r.txid)
                 FROM r RETURNING chain_pos, row_hash, at)
        UPDATE pymem.audit_chain_heads h SET chain_pos = ins.chain_pos, row_hash = ins.row_hash, at = ins.at
          FROM ins WHERE h.user_hash = %(u)s""",
                       {"u": user_hash, "op": operation, "d": digest, "ids": chunk_ids, "n": row_count})


@pytest.mark.parametrize("forged", ["no ids counted, empty records", "an id twice"])
async def test_a_forged_write_row_that_no_pymem_function_writes_is_reported(own_db, tenant, forged, second_round):
    """Found by the review of 0016: an audit row the superuser INSERTs with a valid hash
    but a shape no pymem function writes made a bound row read as unbound, and its
    older copy then went unreported. (The superuser drops the CHECK that refuses
    such rows first: the verifier must not rely on it.)"""
    aconn, admin_conn = own_db
    admin_conn.execute("ALTER TABLE pymem.audit_log DROP CONSTRAINT audit_log_check1")
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "old", ids=("a",))
    older = _copy(admin_conn, user_hash)
    await _write(aconn, tenant, "new", ids=("a",))
    row_id = older[0][0]
    with admin_conn.transaction():
        if forged == "an id twice":
            _forge_audit_row(admin_conn, user_hash, "update", bytes(32), [row_id, row_id], 1)
        else:
            _forge_audit_row(admin_conn, user_hash, "update", b"", [row_id], 0)
    _put_back(admin_conn, older, triggers=False)
    assert ("an audit row of a write that no pymem function writes" in
            {p for _, p in _problems(admin_conn, user_hash)})
    second_round("A4: a row restored from an older copy")


@pytest.mark.single_node
async def test_a_truncate_is_in_every_tenants_chain_and_a_forged_one_hides_no_deletion(own_db, tenant,
                                                                                      second_round):
    """A TRUNCATE by the superuser appends a row to each tenant's chain: rows put back
    after it are reported. A truncate forged into the no-tenant chain (where the time
    is the superuser's to choose) does not hide a row deleted without audit. (Not on
    Citus, where a TRUNCATE of the distributed table is refused.)"""
    aconn, admin_conn = own_db
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "kept")
    copy = _copy(admin_conn, user_hash)
    admin_conn.execute("TRUNCATE pymem.memory_chunks")
    _put_back(admin_conn, copy, triggers=False)
    assert _problems(admin_conn, user_hash) == {(r[0], "live, although a TRUNCATE was audited after its latest write")
                                               for r in copy}
    await _write(aconn, tenant, "again")
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
                           (user_hash, _row_id(user_hash, "a")))
        _forge_audit_row(admin_conn, "0" * 64, "truncate", None, [], 0)
    assert _problems(admin_conn, user_hash) == {(_row_id(user_hash, "a"), "written and never deleted, yet missing")}
    second_round("A4: erased rows re-inserted")


async def test_a_row_deleted_by_direct_dml_with_the_triggers_on_is_reported(aconn, admin_conn, tenant):
    user_hash = hmac_user(tenant)
    await _write(aconn, tenant, "kept")
    with admin_conn.transaction():
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
                           (user_hash, _row_id(user_hash, "a")))
    assert _problems(admin_conn, user_hash) == {(_row_id(user_hash, "a"), "deleted by direct DML, outside pymem's API")}