"""Key lifecycle against the real embedded Postgres: AES rotation (also killed with
SIGKILL mid-run and resumed), per-key seal counters, and HMAC (tenant) rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pymem import repository as repo
from pymem.db import aconnect, connect
from pymem.repository import ChunkInput
from pymem.rotation import key_usage, rotate_encryption_key, rotate_tenant_key
from pymem.security import generate_key, hmac_user, keyring
from tests.utils import DIM, ROOT, open_everything, vec, write_ring_rows

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus


@pytest.fixture
def ops_url(cluster, request):
    """A fresh database and a login role with pymem_app + pymem_maintainer (an operator)."""
    name = f"pymem_rot_{request.node.name[:20].lower().replace('[', '_').replace(']', '')}"
    cluster.fresh_database(name, embedding_dim=DIM)
    cluster.login_role("pymem_test_ops", ["pymem_app", "pymem_maintainer"])
    return cluster.url(name), cluster.url(name, user="pymem_test_ops")


async def index_users(url: str, users: list[str], per_user: int, *, ring: bool = False) -> None:
    """Each user's rows: through the API (under its data key), or as before revision 0019
    (``ring``: under the ring's active key)."""
    conn = await aconnect(url)
    try:
        for u, user in enumerate(users):
            items = [ChunkInput(f"doc-{i % 7}", "s", f"{user} secret {i}", vec(u * 1000 + i), {"i": i})
                     for i in range(per_user)]
            if ring:
                await write_ring_rows(conn, user, items)
            else:
                await repo.index_memory_chunks(conn, user, items)
    finally:
        await conn.close()


async def test_rotate_key_moves_rows_under_ring_keys_to_tenant_data_keys_and_reads_keep_working(ops_url, keys):
    admin, ops = ops_url
    k1, k2 = generate_key(), generate_key()
    keys.ring(1, {1: k1})
    users = ["rot-a", "rot-b", "rot-c"]
    await index_users(ops, users, 40, ring=True)  # written before revision 0019
    keys.ring(2, {1: k1, 2: k2})  # a new ring key; key 1 stays for opening
    conn = await aconnect(ops)
    try:
        hits = await repo.query_memory(conn, "rot-a", "q", vec(3), k=3, rerank=False)
        assert hits and hits[0].text.startswith("rot-a secret")  # old-key rows read through the ring
        report = await rotate_encryption_key(conn, batch_size=25)
        assert (report.rows_resealed, report.tenants, report.rows_left) == (120, 3, 0)
        assert open_everything(admin) == {-1: 120}
        usage = {u.key_id: u for u in await key_usage(conn)}
        assert (usage[1].live_rows, usage[1].seals) == (0, 360)
        # Seals per data key: each tenant's version 1 sealed its 40 rows' 3 fields.
        assert (usage[-1].live_rows, usage[-1].seals, usage[-1].tenants) == (120, 120, 3)
        assert (await rotate_encryption_key(conn)).rows_resealed == 0  # nothing left: a re-run is a no-op
    finally:
        await conn.close()


async def test_a_row_with_a_caller_id_counts_four_seals(ops_url, keys):
    """A13: the nonce budget counts every field sealed; a caller id is the fourth."""
    _, ops = ops_url
    keys.ring(1, {1: generate_key()})
    conn = await aconnect(ops)
    try:
        with_ids = [ChunkInput("d", "s", f"t{i}", vec(i), id=f"doc-{i}") for i in range(5)]
        await repo.index_memory_chunks(conn, "seal-count", with_ids)
        await repo.index_memory_chunks(conn, "seal-count", [ChunkInput("d", "s", "t", vec(9))])
        usage = {u.key_id: u for u in await key_usage(conn)}
        assert (usage[-1].live_rows, usage[-1].seals) == (6, 5 * 4 + 3)
    finally:
        await conn.close()


async def test_rotation_quarantines_rows_under_a_key_the_ring_lacks(ops_url, keys):
    admin, ops = ops_url
    keys.ring(1, {1: generate_key()})
    await index_users(ops, ["lost-key"], 3, ring=True)
    keys.ring(2, {2: generate_key()})  # key 1 forgotten
    conn = await aconnect(ops)
    try:
        report = await rotate_encryption_key(conn)
    finally:
        await conn.close()
    assert (report.rows_resealed, report.quarantined, report.rows_left) == (0, 3, 3)
    with connect(admin) as c:
        assert c.execute("SELECT count(*) FROM pymem.memory_chunks WHERE key_id = 1").fetchone()[0] == 3
        assert c.execute("SELECT reason, count(*) FROM pymem.quarantined() GROUP BY 1").fetchall() == [
            ("key not in the ring", 3)]


def test_rotation_survives_sigkill_and_resumes(report, ops_url, keys):
    admin, ops = ops_url
    k1, k2 = generate_key(), generate_key()
    keys.ring(1, {1: k1})
    users = [f"kill-{i}" for i in range(6)]
    asyncio.run(index_users(ops, users, 100, ring=True))
    keys.ring(2, {1: k1, 2: k2})
    env = {**os.environ, "PYMEM_DATABASE_URL": ops}
    command = [sys.executable, "-m", "pymem", "rotate-key", "--batch-size", "10", "--max-rows-per-second", "40",
               "--no-progress"]
    rng = random.Random(1234)
    progress = []
    for _ in range(6):
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.8, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the rotation finished before it could be killed"
        per_key = open_everything(admin)  # raises InvalidTag if any row were half-written
        assert sum(per_key.values()) == 600
        progress.append(per_key.get(-1, 0))
    assert progress == sorted(progress) and progress[-1] > 0  # work done before each kill stays done
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert open_everything(admin) == {-1: 600}
    report["rotation: SIGKILLs injected mid-run"] = len(progress)
    report["rotation: rows that failed to open after a kill"] = 0


async def test_seal_counter_warns_past_the_threshold(on_citus, ops_url, keys, caplog):
    admin, ops = ops_url
    keys.ring(1, {1: generate_key()})
    with connect(admin) as c:  # a DBA's knob now: pymem.tuning, owner only
        c.execute("UPDATE pymem.tuning SET key_seal_warn_threshold = 12")
    conn = await aconnect(ops)
    try:
        with caplog.at_level(logging.WARNING, logger="pymem.db"):
            await repo.index_memory_chunks(conn, "warn-me", [ChunkInput("d", "s", "t", vec(i)) for i in range(3)])
            assert not [r for r in caplog.records if "rotate it" in r.getMessage()]  # 9 seals < 12
            await repo.index_memory_chunks(conn, "warn-me", [ChunkInput("d", "s", "t", vec(9))])
            # Single node: on the write itself. Citus: the sum over all tenants
            # would be a cross-shard query on every write, so key_usage() warns.
            warned = "a tenant data key (version 1) has sealed 12 fields"
            warned_on_write = any(warned in r.getMessage() for r in caplog.records)
            assert warned_on_write is not on_citus
            usage = {u.key_id: u for u in await key_usage(conn)}
        assert (usage[-1].live_rows, usage[-1].seals) == (4, 12)
        assert any(warned in r.getMessage() for r in caplog.records)
    finally:
        await conn.close()


async def test_hmac_rotation_moves_users_and_reseals_under_the_new_aad(ops_url, keys):
    admin, ops = ops_url
    k1 = generate_key()
    old_hmac, new_hmac = generate_key(), generate_key()
    keys.ring(1, {1: k1}, hmac_key=old_hmac)
    movers, stayer = ["mover-1", "mover-2"], "stayer"
    await index_users(ops, movers + [stayer], 15)
    old_hash = hmac_user("mover-1")
    conn = await aconnect(ops)
    try:
        moved = await rotate_tenant_key(conn, movers, old_hmac, new_hmac)
        assert moved == 30
        assert await repo.query_memory(conn, "mover-1", "q", vec(0), k=5, rerank=False) == []  # old key: gone
        keys.ring(1, {1: k1}, hmac_key=new_hmac)
        hits = await repo.query_memory(conn, "mover-1", "q", vec(0), k=15, rerank=False)
        assert len(hits) == 15 and all(h.text.startswith("mover-1 secret") for h in hits)
        assert await repo.query_memory(conn, stayer, "q", vec(0), k=5, rerank=False) == []  # not moved
    finally:
        await conn.close()
    new_hash = hmac.new(base64.b64decode(new_hmac), b"mover-1", hashlib.sha256).hexdigest()
    with connect(admin) as c:
        assert c.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                         (old_hash,)).fetchone()[0] == 0
        ops_seen = dict(c.execute("SELECT operation, sum(row_count) FROM pymem.audit_log WHERE user_hash = ANY(%s)"
                                  " AND operation IN ('insert', 'delete') GROUP BY 1", ([old_hash, new_hash],)))
        assert ops_seen == {"insert": 30, "delete": 15}  # 15 first written + 15 moved in; 15 moved out
        assert c.execute("SELECT count(*) FROM pymem.audit_verify()").fetchone()[0] == 0


async def test_a_move_keeps_expiries_leaves_expired_rows_and_drops_none_the_table_calls_expired(ops_url, keys):
    """A move re-seals each row with the expiry its AAD bound, leaves the expired ones (erased
    with the old tenant), and opens every row first: one whose expiry the DBA set in the past
    stops the move (InvalidTag), nothing moved, instead of being dropped (the second review)."""
    from cryptography.exceptions import InvalidTag

    admin, ops = ops_url
    k1, old_hmac, new_hmac = generate_key(), generate_key(), generate_key()
    keys.ring(1, {1: k1}, hmac_key=old_hmac)
    conn = await aconnect(ops)
    try:
        await repo.upsert_memory_chunks(conn, "mover", [ChunkInput("d", "s", f"t{i}", vec(i), id=f"c{i}",
                                                                   ttl=[None, 3600, 1][i]) for i in range(3)])
        await asyncio.sleep(1.2)  # c2 expires
        old_hash = hmac_user("mover")
        c0 = keyring().tenant_index(old_hash).row_id("c0")
        with connect(admin) as c, c.transaction():
            c.execute("SET LOCAL session_replication_role = replica")
            c.execute("UPDATE pymem.memory_chunks SET expires_at = now() - interval '1 s' WHERE id = %s", (c0,))
        with pytest.raises(InvalidTag):
            await rotate_tenant_key(conn, ["mover"], old_hmac, new_hmac)
        with connect(admin) as c:
            assert c.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                             (old_hash,)).fetchone()[0] == 3  # nothing moved, nothing erased
            c.execute("SET session_replication_role = replica")
            c.execute("UPDATE pymem.memory_chunks SET expires_at = NULL WHERE id = %s", (c0,))  # put c0 right again
        assert await rotate_tenant_key(conn, ["mover"], old_hmac, new_hmac) == 2  # c2 expired: not moved
        keys.ring(1, {1: k1}, hmac_key=new_hmac)
        hits = {h.external_id: h for h in (await repo.list_memory_chunks(conn, "mover")).hits}
        assert set(hits) == {"c0", "c1"} and hits["c0"].expires_at is None and hits["c1"].expires_at is not None
    finally:
        await conn.close()


async def test_hmac_rotation_rejects_bad_keys(ops_url):
    _, ops = ops_url
    conn = await aconnect(ops)
    try:
        same = generate_key()
        with pytest.raises(ValueError, match="must differ"):
            await rotate_tenant_key(conn, ["u"], same, same)
        with pytest.raises(ValueError, match="32 bytes"):
            await rotate_tenant_key(conn, ["u"], base64.b64encode(b"short").decode(), generate_key())
        with pytest.raises(ValueError, match="non-empty"):
            await rotate_tenant_key(conn, [""], generate_key(), generate_key())
    finally:
        await conn.close()
