"""Tenant data keys (revision 0019) with the default, local root keys: envelope
encryption, erasure that reaches copies, root rotation (stopped and resumed), root
retirement, and rows written before 0019. Attacks run as the role that would try
them: a superuser putting rows back from a copy, or moving wrapped keys around."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from cryptography.exceptions import InvalidTag

from pymem import sync
from pymem.audit import generate_signing_key, verify_audit_log, write_checkpoint
from pymem.chunks import ChunkInput
from pymem.db import aconnect, connect
from pymem.errors import KeyDestroyed, RootKeyUnavailable, WrappedKeyInvalid
from pymem.root_keys import LocalRootKeys, register_provider, reset_providers
from pymem.root_rotation import destroyed_data_keys
from pymem.security import chunk_aad, generate_key, hmac_user, keyring, open_sealed
from pymem.tenant import tenant_transaction
from pymem.tenant_keys import forget_all, key_metrics
from tests.utils import DIM, ROOT, vec, write_ring_rows

# Also run through a Citus coordinator (make test-citus), where not marked otherwise.
pytestmark = pytest.mark.citus


@pytest.fixture
def store(cluster, request):
    """A fresh database: (admin DSN, DSN of a login with pymem_app and pymem_maintainer)."""
    name = f"pymem_dk_{uuid.uuid4().hex[:12]}"
    cluster.fresh_database(name, embedding_dim=DIM)
    cluster.login_role("pymem_test_ops", ["pymem_app", "pymem_maintainer"])
    yield cluster.url(name), cluster.url(name, user="pymem_test_ops")
    forget_all()


def chunks(user: str, n: int, seed: int = 0) -> list[ChunkInput]:
    return [ChunkInput(f"doc-{i % 3}", "s", f"{user} secret {i}", vec(seed * 1000 + i), {"i": i}) for i in range(n)]


def write(url: str, user: str, n: int = 3, seed: int = 0) -> list[uuid.UUID]:
    with connect(url) as conn:
        return sync.index_memory_chunks(conn, user, chunks(user, n, seed))


def read_all(url: str, user: str) -> list[str]:
    with connect(url) as conn:
        return sorted(hit.text for hit in sync.list_memory_chunks(conn, user).hits)


def table(admin_url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(admin_url) as conn:
        return conn.execute(query, params).fetchall()


def operations(admin_url: str, user_hash: str) -> list[str]:
    return [r[0] for r in table(admin_url, "SELECT operation FROM pymem.audit_log WHERE user_hash = %s"
                                           " ORDER BY chain_pos", (user_hash,))]


def test_each_tenant_s_rows_are_sealed_under_its_own_data_key_and_the_database_holds_it_wrapped(store):
    admin_url, url = store
    write(url, "alice")
    write(url, "bob")
    alice, bob = hmac_user("alice"), hmac_user("bob")
    rows = table(admin_url, "SELECT user_hash, key_id, text_cipher, id, doc_id, source FROM pymem.memory_chunks")
    assert {key_id for _, key_id, *_ in rows} == {-1}  # version 1 of each tenant's own key
    keys = {r[0]: r for r in table(admin_url, "SELECT user_hash, version, root_key, wrapped FROM pymem.data_keys")}
    assert set(keys) == {alice, bob}
    assert keys[alice][2] == f"local:{keyring().active_key_id}" and keys[alice][3] != keys[bob][3]
    # The environment's key opens none of them: each is sealed under its tenant's key.
    user_hash, _, text_cipher, row_id, doc_id, source = rows[0]
    with pytest.raises(InvalidTag):
        open_sealed(bytes(text_cipher), chunk_aad(user_hash, str(row_id), "text", (doc_id, source), ""))  # AAD v3
    assert read_all(url, "alice") == [f"alice secret {i}" for i in range(3)]
    assert "key_create" in operations(admin_url, alice) and "key_unwrap" in operations(admin_url, alice)


def test_a_warm_tenant_needs_no_key_round_trip_and_a_cold_one_unwraps_once(store):
    admin_url, url = store
    write(url, "carol")
    before = key_metrics()
    read_all(url, "carol")
    read_all(url, "carol")
    after = key_metrics()
    assert after["hits"] - before["hits"] >= 2 and after["unwraps"] == before["unwraps"]
    unwraps = operations(admin_url, hmac_user("carol")).count("key_unwrap")
    forget_all()
    read_all(url, "carol")
    assert key_metrics()["unwraps"] == after["unwraps"] + 1
    assert operations(admin_url, hmac_user("carol")).count("key_unwrap") == unwraps + 1


def test_rows_of_an_erased_tenant_put_back_from_a_copy_do_not_open(store):
    """A superuser keeps a copy of a tenant's rows, the tenant is erased, and the copy is
    put back: the rows are there, and nothing opens them (in this process and a fresh one)."""
    admin_url, url = store
    ids = write(url, "dave", 4)
    user_hash = hmac_user("dave")
    with psycopg.connect(admin_url) as admin:
        admin.execute("CREATE TABLE public.stolen AS SELECT * FROM pymem.memory_chunks WHERE user_hash = %s",
                      (user_hash,))
    with connect(url) as conn:
        assert sync.erase_user(conn, "dave") == 4
    destroyed = table(admin_url, "SELECT wrapped, root_key, destroyed_at IS NOT NULL FROM pymem.data_keys"
                                 " WHERE user_hash = %s", (user_hash,))
    assert destroyed == [(None, None, True)]
    assert operations(admin_url, user_hash)[-1] == "key_destroy"
    with psycopg.connect(admin_url) as admin:
        admin.execute("INSERT INTO pymem.memory_chunks SELECT * FROM public.stolen")
    for fresh_process in (False, True):
        if fresh_process:
            forget_all()
        with connect(url) as conn:
            with pytest.raises(KeyDestroyed, match="destroyed when the tenant was erased"):
                sync.get_memory_chunks(conn, "dave", [str(i) for i in ids])
            with pytest.raises(KeyDestroyed):
                sync.query_memory(conn, "dave", "q", vec(0), k=2, rerank=False)
    # The tenant may come back: its new rows get a new key, never a destroyed version.
    with psycopg.connect(admin_url) as admin:
        admin.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s", (user_hash,))
    write(url, "dave", 1, seed=9)
    assert read_all(url, "dave") == ["dave secret 0"]
    assert table(admin_url, "SELECT DISTINCT key_id FROM pymem.memory_chunks WHERE user_hash = %s",
                 (user_hash,)) == [(-2,)]


def erase_elsewhere(url: str, user_hash: str) -> None:
    """What erase_user runs, as another process would: this process's cache is left as it was."""
    async def erase():
        conn = await aconnect(url)
        try:
            async with tenant_transaction(conn, user_hash):
                await conn.execute("SELECT pymem.erase_tenant(%s::pg_catalog.bpchar)", (user_hash,))
        finally:
            await conn.close()
    sync.run(erase())


def erase_elsewhere_and_put_back(store, user: str) -> None:
    """The tenant erased by another process, then its rows put back by a superuser from a
    copy taken just before (without the key rows)."""
    admin_url, url = store
    user_hash = hmac_user(user)
    with psycopg.connect(admin_url) as admin:
        admin.execute("CREATE TEMPORARY TABLE copy AS SELECT * FROM pymem.memory_chunks WHERE user_hash = %s",
                      (user_hash,))
        erase_elsewhere(url, user_hash)
        admin.execute("INSERT INTO pymem.memory_chunks SELECT * FROM copy")


def test_an_erasure_by_another_process_reaches_the_keys_this_process_has_cached_at_once(store):
    """Every read also reads which of the tenant's keys are live, in its own transaction:
    a key cached here and destroyed elsewhere opens nothing, and a write under it is
    refused and made again under a new key."""
    admin_url, url = store
    ids = write(url, "olga", 2)
    assert len(read_all(url, "olga")) == 2  # olga's key is in this process's cache
    erase_elsewhere_and_put_back(store, "olga")
    with connect(url) as conn, pytest.raises(KeyDestroyed):
        sync.get_memory_chunks(conn, "olga", [str(i) for i in ids])


def test_a_destroyed_key_row_made_live_again_with_other_bytes_does_not_revive_a_cached_key(store):
    """Found by this session's attack review (superuser): after an erasure elsewhere, the
    superuser puts the rows back and makes version 1 live again with junk bytes, so that a
    process comparing version numbers kept using the key it had cached. The live keys are
    compared by the sha256 of their wrapped bytes: the process loads the junk, which does
    not unwrap, and opens nothing."""
    admin_url, url = store
    ids = write(url, "opal", 2)
    opal = hmac_user("opal")
    assert len(read_all(url, "opal")) == 2  # opal's key is in this process's cache
    [(root,)] = table(admin_url, "SELECT root_key FROM pymem.data_keys WHERE user_hash = %s", (opal,))
    erase_elsewhere_and_put_back(store, "opal")
    with psycopg.connect(admin_url) as admin:
        admin.execute("UPDATE pymem.data_keys SET wrapped = %s, root_key = %s, destroyed_at = NULL"
                      " WHERE user_hash = %s AND version = 1", (os.urandom(60), root, opal))
    with connect(url) as conn, pytest.raises(WrappedKeyInvalid):
        sync.get_memory_chunks(conn, "opal", [str(i) for i in ids])
    with connect(url) as conn, pytest.raises(WrappedKeyInvalid):
        sync.query_memory(conn, "opal", "q", vec(0), k=2, rerank=False)


def test_a_write_under_a_key_destroyed_since_it_was_cached_is_refused_and_made_again(store):
    admin_url, url = store
    write(url, "pia", 1)
    pia = hmac_user("pia")
    erase_elsewhere(url, pia)  # this process still has version 1 cached as current
    write(url, "pia", 2, seed=1)
    assert table(admin_url, "SELECT DISTINCT key_id FROM pymem.memory_chunks WHERE user_hash = %s",
                 (pia,)) == [(-2,)]
    assert read_all(url, "pia") == ["pia secret 0", "pia secret 1"]


def test_a_wrapped_key_moved_to_another_tenant_does_not_unwrap(store):
    """A superuser gives one tenant another tenant's wrapped key (and rows): the wrap is
    bound to its tenant and version, so reads fail closed instead of opening anything."""
    admin_url, url = store
    write(url, "erin")
    write(url, "frank", seed=1)
    erin, frank = hmac_user("erin"), hmac_user("frank")
    forget_all()
    [(erin_wrapped,)] = table(admin_url, "SELECT wrapped FROM pymem.data_keys WHERE user_hash = %s", (erin,))
    [(frank_wrapped,)] = table(admin_url, "SELECT wrapped FROM pymem.data_keys WHERE user_hash = %s", (frank,))
    with psycopg.connect(admin_url) as admin:
        admin.execute("UPDATE pymem.data_keys SET wrapped = %s WHERE user_hash = %s", (frank_wrapped, erin))
    with connect(url) as conn, pytest.raises(WrappedKeyInvalid):
        sync.list_memory_chunks(conn, "erin")
    # Erin's own key back, and Frank's rows moved under her hash: her key does not open them.
    with psycopg.connect(admin_url) as admin:
        admin.execute("UPDATE pymem.data_keys SET wrapped = %s WHERE user_hash = %s", (erin_wrapped, erin))
        admin.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s", (erin,))
        # As a copy, not an UPDATE: Citus does not move a row to another tenant's shard.
        admin.execute("CREATE TABLE public.frank_rows AS SELECT * FROM pymem.memory_chunks WHERE user_hash = %s",
                      (frank,))
        admin.execute("UPDATE public.frank_rows SET user_hash = %s", (erin,))
        admin.execute("INSERT INTO pymem.memory_chunks SELECT * FROM public.frank_rows")
    forget_all()
    with connect(url) as conn, pytest.raises(InvalidTag):
        sync.list_memory_chunks(conn, "erin")


def test_a_provider_failure_leaves_no_key_bytes_in_the_traceback_s_frames(store, monkeypatch):
    """Error reporters capture frames' local variables: a new data key made just before its
    wrap failed must not be among them, nor in the message."""
    _, url = store

    class Failing(LocalRootKeys):
        name = "failing"

        def current(self) -> str:
            return "failing:1"

        def wrap(self, root_key, data_key, context):
            raise RootKeyUnavailable("the test's provider is down")

    register_provider("failing", Failing)
    monkeypatch.setenv("PYMEM_ROOT_KEY_PROVIDER", "failing")
    reset_providers()
    try:
        with connect(url) as conn, pytest.raises(RootKeyUnavailable) as caught:
            sync.index_memory_chunks(conn, "sam", chunks("sam", 1))
    finally:
        monkeypatch.undo()
        reset_providers()
    frames, tb = [], caught.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    assert frames, "the error carried no traceback"
    leaked = [(f.f_code.co_name, name) for f in frames for name, value in f.f_locals.items()
              if isinstance(value, bytes) and len(value) == 32]
    assert leaked == []


def test_a_keyless_app_login_cannot_read_a_tenant_s_wrapped_keys(store, cluster):
    admin_url, url = store
    write(url, "gina")
    cluster.login_role("pymem_test_keyless", ["pymem_app"])
    keyless = url.replace("pymem_test_ops", "pymem_test_keyless")
    with connect(keyless) as conn:
        for statement in ("SELECT * FROM pymem.data_keys",
                          "SELECT * FROM pymem.data_keys_of(%s::bpchar)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, (hmac_user("gina"),) if "%s" in statement else None)
            conn.rollback()


def test_a_maintainer_login_without_the_keys_cannot_overwrite_a_tenant_s_data_key(store):
    """The database cannot tell a good wrap from junk: each re-wrap needs the tenant's
    proof, which a login without the keys cannot make."""
    admin_url, url = store
    write(url, "mona")
    root = f"local:{keyring().active_key_id}"
    with connect(url) as attacker:  # the operator's login (pymem_maintainer), without the keys
        for proof in (bytes(32), None):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                attacker.execute("SELECT pymem.rewrap_data_keys(%s::bpchar[], %s::bytea[], '{1}', %s::text[],"
                                 " 'local:9', %s::bytea[])", ([hmac_user("mona")], [proof], [root], [bytes(60)]))
    forget_all()
    assert read_all(url, "mona") == [f"mona secret {i}" for i in range(3)]


def legacy_rows(url: str, user: str, n: int) -> None:
    """Rows as pymem wrote them before 0019: sealed under the environment's active key."""
    async def put():
        conn = await aconnect(url)
        try:
            await write_ring_rows(conn, user, chunks(user, n))
        finally:
            await conn.close()
    sync.run(put())


def test_rows_written_before_tenant_keys_keep_opening_and_rotate_key_moves_them(store):
    admin_url, url = store
    legacy_rows(url, "hana", 5)
    hana = hmac_user("hana")
    assert table(admin_url, "SELECT DISTINCT key_id FROM pymem.memory_chunks") == [(keyring().active_key_id,)]
    with connect(url) as maintainer:  # the ring key still seals rows: its root may not be retired
        with pytest.raises(psycopg.errors.ObjectInUse):
            maintainer.execute("SELECT pymem.retire_root_key('local:1')")
    assert read_all(url, "hana") == [f"hana secret {i}" for i in range(5)]
    with connect(url) as conn:
        report = sync.rotate_encryption_key(conn, batch_size=2)
    assert (report.rows_resealed, report.rows_left, report.quarantined) == (5, 0, 0)
    assert table(admin_url, "SELECT DISTINCT key_id FROM pymem.memory_chunks WHERE user_hash = %s",
                 (hana,)) == [(-1,)]
    forget_all()
    assert read_all(url, "hana") == [f"hana secret {i}" for i in range(5)]
    with connect(url) as conn:  # nothing left: a re-run does nothing
        assert sync.rotate_encryption_key(conn).rows_resealed == 0


def test_rotate_key_quarantines_the_put_back_rows_of_an_erased_tenant_instead_of_resealing_them(store):
    """A superuser puts an erased tenant's rows (written before 0019, under a ring key) back
    before the migration runs: rotate-key must not give them a new, live data key."""
    admin_url, url = store
    legacy_rows(url, "rita", 3)
    rita = hmac_user("rita")
    with psycopg.connect(admin_url) as admin:
        admin.execute("CREATE TABLE public.rita_copy AS SELECT * FROM pymem.memory_chunks WHERE user_hash = %s",
                      (rita,))
    with connect(url) as conn:
        assert sync.erase_user(conn, "rita") == 3
    with psycopg.connect(admin_url) as admin:
        admin.execute("INSERT INTO pymem.memory_chunks SELECT * FROM public.rita_copy")
    with connect(url) as conn:
        report = sync.rotate_encryption_key(conn)
    assert (report.rows_resealed, report.quarantined) == (0, 3)
    assert table(admin_url, "SELECT count(*) FROM pymem.data_keys WHERE user_hash = %s AND wrapped IS NOT NULL",
                 (rita,)) == [(0,)]
    assert table(admin_url, "SELECT DISTINCT reason FROM pymem.quarantined() WHERE user_hash = %s",
                 (rita,)) == [("tenant erased",)]


def test_rotating_one_tenant_s_data_key_reseals_its_rows_only(store):
    admin_url, url = store
    write(url, "ivan", 3)
    write(url, "jane", 3, seed=1)
    ivan = hmac_user("ivan")
    jane_before = table(admin_url, "SELECT id, text_cipher FROM pymem.memory_chunks WHERE user_hash = %s",
                        (hmac_user("jane"),))
    with connect(url) as conn:
        report = sync.rotate_encryption_key(conn, user_hashes=[ivan], new_data_key=True)
    assert report.rows_resealed == 3
    assert table(admin_url, "SELECT DISTINCT key_id FROM pymem.memory_chunks WHERE user_hash = %s",
                 (ivan,)) == [(-2,)]
    assert table(admin_url, "SELECT version, retired_at IS NOT NULL FROM pymem.data_keys WHERE user_hash = %s"
                            " ORDER BY version", (ivan,)) == [(1, True), (2, False)]
    assert table(admin_url, "SELECT id, text_cipher FROM pymem.memory_chunks WHERE user_hash = %s",
                 (hmac_user("jane"),)) == jane_before
    forget_all()
    assert read_all(url, "ivan") == [f"ivan secret {i}" for i in range(3)]
    seals = {k: s for k, s in table(admin_url, "SELECT key_id, seals FROM pymem.key_stats WHERE user_hash = %s",
                                    (ivan,))}
    assert seals[-2] == 9  # the nonce budget is counted per data key: 3 rows x 3 fields under version 2


def new_root(keys, key_id: int) -> None:
    """Make a new ring key (and so ``local:<key_id>``) current, keeping the old one."""
    ring = keyring()
    keys.set(MEMORY_ENCRYPTION_KEY=generate_key(), MEMORY_ENCRYPTION_KEY_ID=str(key_id),
             MEMORY_ENCRYPTION_OLD_KEYS=f"{ring.active_key_id}:{os.environ['MEMORY_ENCRYPTION_KEY']}")


def test_root_rotation_rewraps_data_keys_only_resumes_and_every_row_opens_after_retirement(store, keys):
    admin_url, url = store
    users = [f"user-{n}" for n in range(7)]
    for n, user in enumerate(users):
        write(url, user, 2, seed=n)
    ciphertexts = table(admin_url, "SELECT id, text_cipher, key_id FROM pymem.memory_chunks ORDER BY id")
    new_root(keys, 2)
    with connect(url) as conn:
        first = sync.rotate_root_key(conn, batch_size=3, max_batches=1)  # stopped after one batch
        assert (first.root_key, first.rewrapped) == ("local:2", 3)
        usage = {u.root_key: u for u in sync.root_key_usage(conn)}
        assert (usage["local:1"].data_keys, usage["local:2"].data_keys) == (4, 3)
        with pytest.raises(ValueError, match="still under"):
            sync.retire_root_key(conn, "local:1", lambda message: True)
        rest = sync.rotate_root_key(conn, batch_size=3)
        assert rest.rewrapped == 4
    # No row was read or re-sealed; each re-wrap is in its tenant's chain.
    assert table(admin_url, "SELECT id, text_cipher, key_id FROM pymem.memory_chunks ORDER BY id") == ciphertexts
    assert all("key_rewrap" in operations(admin_url, hmac_user(u)) for u in users)
    said = []
    with connect(url) as conn:
        assert sync.retire_root_key(conn, "local:1", lambda message: said.append(message) or False) is None
        last_used = sync.retire_root_key(conn, "local:1", lambda message: True)
    assert "unreadable" in said[0] and last_used.isoformat() in said[0]
    assert table(admin_url, "SELECT retired_at IS NOT NULL FROM pymem.root_keys WHERE root_key = 'local:1'") == [(True,)]
    assert operations(admin_url, "0" * 64)[-1] == "root_key_retire"
    # A process still on the old root (a rolling change) wraps nothing new under it.
    ring = dict(keys.variables)
    keys.set(MEMORY_ENCRYPTION_KEY=os.environ["MEMORY_ENCRYPTION_OLD_KEYS"].split(":", 1)[1],
             MEMORY_ENCRYPTION_KEY_ID="1",
             MEMORY_ENCRYPTION_OLD_KEYS=f"2:{ring['MEMORY_ENCRYPTION_KEY']}")
    with connect(url) as conn, pytest.raises(RootKeyUnavailable, match="retired"):
        sync.index_memory_chunks(conn, "late-tenant", chunks("late-tenant", 1))
    keys.set(**ring)
    # Retired: the old ring key goes, and every row still opens.
    keys.set(MEMORY_ENCRYPTION_OLD_KEYS="")
    forget_all()
    for n, user in enumerate(users):
        assert read_all(url, user) == [f"{user} secret {i}" for i in range(2)]


def erased_then_checkpointed(store, keys, tmp_path, user: str) -> tuple[str, str, bytes, Path]:
    """A tenant written, its wrapped key kept (as a backup holds it), erased, then a signed
    checkpoint of the audit log taken: (its hash, root key, wrapped key, checkpoint file)."""
    admin_url, url = store
    write(url, user, 2)
    user_hash = hmac_user(user)
    [(root, wrapped)] = table(admin_url, "SELECT root_key, wrapped FROM pymem.data_keys WHERE user_hash = %s",
                              (user_hash,))
    with connect(url) as conn:
        sync.erase_user(conn, user)
    signing, verifying = generate_signing_key()
    keys.set(PYMEM_AUDIT_SIGNING_KEY=signing, PYMEM_AUDIT_VERIFY_KEY=verifying)
    checkpoint = tmp_path / "after-erasure.checkpoint"
    with psycopg.connect(admin_url) as admin:
        write_checkpoint(admin, checkpoint)
    return user_hash, root, wrapped, checkpoint


def test_a_root_rotation_on_a_checkpoint_refuses_a_destroyed_key_a_superuser_put_back(store, keys, cluster,
                                                                                      tmp_path):
    """E2: a superuser keeps an erased tenant's wrapped key from a backup and puts it back as
    live before a root rotation, to have it re-wrapped under the new root. With the chains
    verified against a checkpoint taken after the erasure, the rotator knows the version
    was destroyed and stops before re-wrapping anything."""
    admin_url, url = store
    write(url, "walt", 2, seed=1)
    vera, root, wrapped, checkpoint = erased_then_checkpointed(store, keys, tmp_path, "vera")
    with psycopg.connect(admin_url) as admin:  # the attack: the destroyed key, live again
        admin.execute("UPDATE pymem.data_keys SET wrapped = %s, root_key = %s, destroyed_at = NULL"
                      " WHERE user_hash = %s AND version = 1", (wrapped, root, vera))
    new_root(keys, 2)
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    cluster.login_role("pymem_test_rotator", ["pymem_app", "pymem_maintainer", "pymem_auditor"])
    with connect(cluster.url(dbname, user="pymem_test_rotator")) as conn:
        destroyed = destroyed_data_keys(conn, checkpoint)
        assert destroyed[vera] == {1}
        with pytest.raises(KeyDestroyed, match="put back"):
            sync.rotate_root_key(conn, destroyed=destroyed)
    assert table(admin_url, "SELECT root_key FROM pymem.data_keys WHERE user_hash = %s", (vera,)) == [(root,)]


def test_a_root_rotation_refuses_a_listing_function_a_superuser_replaced_to_disguise_a_destroyed_key(
        store, keys, cluster, tmp_path):
    """E2, found by this session's attack review: the superuser also replaces the function
    that lists the keys to re-wrap, so that it names the put-back version 1 as 1.4, which is
    not in the destroyed set, formats as 1 in the key's AAD and is rounded to 1 by the real
    re-wrap. A checkpointed run refuses a database whose functions are not the shipped ones;
    the rotation itself refuses a version that is not an int."""
    admin_url, url = store
    vera, root, wrapped, checkpoint = erased_then_checkpointed(store, keys, tmp_path, "vera")
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    cluster.login_role("pymem_test_rotator", ["pymem_app", "pymem_maintainer", "pymem_auditor"])
    rotator = cluster.url(dbname, user="pymem_test_rotator")
    with connect(rotator) as conn:
        destroyed = destroyed_data_keys(conn, checkpoint)  # read before the function is replaced
    with psycopg.connect(admin_url) as admin:  # the attack
        admin.execute("UPDATE pymem.data_keys SET wrapped = %s, root_key = %s, destroyed_at = NULL"
                      " WHERE user_hash = %s AND version = 1", (wrapped, root, vera))
        admin.execute("DROP FUNCTION pymem.data_keys_to_rewrap(text, integer)")
        admin.execute("""
            CREATE FUNCTION pymem.data_keys_to_rewrap(p_root_key text, p_limit integer)
                RETURNS TABLE (user_hash char(64), version numeric, root_key text, wrapped bytea)
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
                BEGIN
                    RETURN QUERY SELECT k.user_hash, k.version + 0.4, k.root_key, k.wrapped FROM pymem.data_keys k
                     WHERE k.root_key <> p_root_key ORDER BY 1, 2 LIMIT p_limit;
                END $$""")
        admin.execute("GRANT EXECUTE ON FUNCTION pymem.data_keys_to_rewrap(text, integer) TO pymem_maintainer")
    new_root(keys, 2)
    with connect(rotator) as conn:
        with pytest.raises(ValueError, match="function definitions"):
            destroyed_data_keys(conn, checkpoint)
        with pytest.raises(WrappedKeyInvalid, match="not one"):
            sync.rotate_root_key(conn, destroyed=destroyed)
    assert table(admin_url, "SELECT root_key FROM pymem.data_keys WHERE user_hash = %s", (vera,)) == [(root,)]


def test_root_rotation_killed_mid_run_resumes_and_every_row_opens(store, keys):
    admin_url, url = store
    users = [f"kill-{n}" for n in range(30)]
    for n, user in enumerate(users):
        write(url, user, 1, seed=n)
    new_root(keys, 2)
    command = [sys.executable, "-m", "pymem", "rotate-root-key", "--unverified", "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "PYMEM_DATABASE_URL": url}

    def moved() -> int:
        return table(admin_url, "SELECT count(*) FROM pymem.data_keys WHERE root_key = 'local:2'")[0][0]
    proc = subprocess.Popen([*command, "--max-keys-per-second", "10"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while moved() < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the rotation finished before it could be killed"
    assert 0 < moved() < 30  # what was done before the kill stays done
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert moved() == 30
    keys.set(MEMORY_ENCRYPTION_OLD_KEYS="")  # the old root is gone: every row opens under the new one
    forget_all()
    for user in users:
        assert read_all(url, user) == [f"{user} secret 0"]


@pytest.mark.single_node
def test_erasure_reaches_a_full_backup_once_the_root_key_that_wrapped_it_is_retired(store, keys, cluster, tmp_path):
    """backup -> erase -> root rotation -> retire the old root -> restore the backup: the
    erased tenant's rows in the restored copy do not open (and, the documented trade-off,
    nothing else in that older backup does either), while the live database serves on.
    The restore runbook's steps are the test's: the keys the backup needs, the audit
    verified against the checkpoint taken just before the backup."""
    admin_url, url = store
    write(url, "kim", 3)
    write(url, "lee", 3, seed=1)
    signing, verifying = generate_signing_key()
    keys.set(PYMEM_AUDIT_SIGNING_KEY=signing, PYMEM_AUDIT_VERIFY_KEY=verifying)
    checkpoint = tmp_path / "before-backup.checkpoint"
    with psycopg.connect(admin_url) as admin:
        assert write_checkpoint(admin, checkpoint) >= 2
    dump = subprocess.run([str(cluster.bin_dir / "pg_dump"), "--format=custom", admin_url],
                          check=True, capture_output=True).stdout
    with connect(url) as conn:
        sync.erase_user(conn, "kim")
    new_root(keys, 2)
    with connect(url) as conn:
        sync.rotate_root_key(conn)
        sync.retire_root_key(conn, "local:1", lambda message: True)

    def restore() -> str:
        restored = f"pymem_dk_restored_{uuid.uuid4().hex[:8]}"
        cluster.fresh_database(restored, migrate=False)
        subprocess.run([str(cluster.bin_dir / "pg_restore"), "--dbname", cluster.url(restored)],
                       input=dump, check=True, capture_output=True)
        return restored
    # Retired, not yet destroyed: the backup restores whole, the erased tenant included
    # (the runbook: erase again after restoring). This is the retention window.
    in_window = restore()
    with psycopg.connect(cluster.url(in_window)) as restored_admin:
        # The chains the backup holds, against the checkpoint of the database it was taken of.
        assert verify_audit_log(restored_admin, checkpoint=checkpoint,
                                database=psycopg.conninfo.conninfo_to_dict(admin_url)["dbname"]) == []
    with connect(cluster.url(in_window, user="pymem_test_ops")) as conn:
        assert len(sync.list_memory_chunks(conn, "kim").hits) == 3
    keys.set(MEMORY_ENCRYPTION_OLD_KEYS="")  # destroyed where it was kept
    forget_all()
    restored = restore()
    restored_url = cluster.url(restored, user="pymem_test_ops")
    assert table(cluster.url(restored), "SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                 (hmac_user("kim"),)) == [(3,)]
    for user in ("kim", "lee"):
        with connect(restored_url) as conn, pytest.raises(RootKeyUnavailable, match="local:1"):
            sync.list_memory_chunks(conn, user)
    assert read_all(url, "lee") == [f"lee secret {i}" for i in range(3)]
