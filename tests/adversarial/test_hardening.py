"""Hardening: concurrency over a pool, pooled-connection leaks, fuzzing open_sealed,
hostile labels, privilege escalation attempts, and the bad-input matrix.

Real Postgres, real pool, real cryptography. Figures go to the run's summary
("reliability & security figures"), which the README quotes.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import numpy as np
import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

from pymem import repository as repo
from pymem.reads import commit_read_intent
from pymem.repository import ChunkInput
from pymem.security import hmac_user, open_sealed, seal
from pymem.tenant import set_rls_context
from tests.utils import DIM, SEARCH_COUNT_SQL, vec


def pool_for(url: str, size: int) -> AsyncConnectionPool:
    """A pool like an application's: autocommit connections, pgvector registered once each."""
    return AsyncConnectionPool(url, min_size=size, max_size=size, kwargs={"autocommit": True},
                               configure=register_vector_async, open=False)


def row_counts(admin_conn, users: list[str]) -> dict[str, int]:
    hashes = {hmac_user(u): u for u in users}
    rows = admin_conn.execute("SELECT user_hash, count(*) FROM pymem.memory_chunks WHERE user_hash = ANY(%s)"
                              " GROUP BY 1", (list(hashes),)).fetchall()
    found = {hashes[h]: n for h, n in rows}
    return {u: found.get(u, 0) for u in users}


async def test_32_tenants_x_200_mixed_operations_over_a_pool(report, app_url, admin_conn):
    run = uuid.uuid4().hex[:6]
    tenants = [f"conc-{run}-{i:02d}" for i in range(32)]
    docs: dict[str, dict[str, int]] = {t: {} for t in tenants}  # doc_id -> live chunks
    chunk_ids: dict[str, list] = {t: [] for t in tenants}
    tally = {"ops": 0, "cross": 0, "lost": 0}

    async def worker(number: int, tenant: str, pool: AsyncConnectionPool):
        rng = random.Random(number)
        for step in range(200):
            roll = rng.random()
            async with pool.connection() as conn:
                if roll < 0.35:
                    doc, n = f"{tenant}-d{step}", rng.randint(1, 3)
                    ids = await repo.index_memory_chunks(conn, tenant, [
                        ChunkInput(doc, "s", f"{tenant}|{step}|{j}", vec(number * 10_000 + step * 3 + j))
                        for j in range(n)])
                    docs[tenant][doc] = n
                    chunk_ids[tenant] += ids
                elif roll < 0.80:
                    hits = await repo.query_memory(conn, tenant, "q", vec(rng.randrange(10**6)), k=5, rerank=False)
                    tally["cross"] += sum(not h.text.startswith(tenant + "|") for h in hits)
                elif roll < 0.90:
                    other = tenants[(number + 1) % len(tenants)]
                    if chunk_ids[other]:
                        stolen = await repo.get_chunk(conn, tenant, rng.choice(chunk_ids[other]))
                        tally["cross"] += stolen is not None
                else:
                    live = [d for d, n in docs[tenant].items() if n]
                    if live:
                        doc = rng.choice(live)
                        deleted = await repo.delete_document(conn, tenant, doc)
                        tally["lost"] += deleted != docs[tenant][doc]
                        docs[tenant][doc] = 0
            tally["ops"] += 1

    async with pool_for(app_url, 8) as pool:
        await asyncio.gather(*(worker(i, t, pool) for i, t in enumerate(tenants)))
    counts = row_counts(admin_conn, tenants)
    lost = sum(abs(counts[t] - sum(docs[t].values())) for t in tenants) + tally["lost"]
    assert tally["ops"] == 32 * 200
    assert tally["cross"] == 0
    assert lost == 0, counts
    problems = admin_conn.execute("SELECT count(*) FROM pymem.audit_verify()").fetchone()[0]
    assert problems == 0  # the per-tenant hash chains stay linear under concurrent writers
    report["concurrency: operations run (32 tenants x 200, 8 pooled connections)"] = tally["ops"]
    report["concurrency: cross-tenant results"] = tally["cross"]
    report["concurrency: lost or phantom writes"] = lost
    report["concurrency: audit chain problems"] = problems


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_pooled_connection_does_not_leak_the_tenant(report, app_url, ending):
    user = f"leak-{uuid.uuid4().hex[:6]}"
    async with pool_for(app_url, 1) as pool:
        async with pool.connection() as conn:
            await repo.index_memory_chunk(conn, user, "d", "s", "t", vec(1))
            ticket = await commit_read_intent(conn, hmac_user(user), "search", (vec(1), 10))
            with pytest.raises(RuntimeError) if ending == "rollback" else _nothing():
                async with set_rls_context(conn, user) as user_hash:
                    cur = await conn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(1), 10))
                    assert (await cur.fetchone())[0] == 1
                    if ending == "rollback":
                        raise RuntimeError("abort the tenant transaction")
            first_backend = conn.info.backend_pid
        async with pool.connection() as conn:  # the same physical connection, reused
            assert conn.info.backend_pid == first_backend
            cur = await conn.execute("SELECT current_setting('app.user_hash', true)")
            assert (await cur.fetchone())[0] in (None, "")
            # The tenant's own search, with its committed intent, but on the reused
            # connection without a context: refused, so nothing leaks.
            try:
                async with conn.transaction():
                    cur = await conn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(1), 10))
                    leaked = (await cur.fetchone())[0]
            except psycopg.errors.InsufficientPrivilege:
                leaked = 0
    assert leaked == 0
    report[f"pooled leak after {ending}: rows seen by the next transaction"] = leaked


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fuzz_open_sealed_never_returns_plaintext(report):
    rng = random.Random(99)
    aad = b"pymem:v1|" + b"f" * 64 + b"|fuzz|text"
    valid = seal(b"the fuzzing target plaintext", aad)
    returned = outcomes = 0
    for i in range(100_000):
        kind = i % 4
        if kind == 0:
            blob = rng.randbytes(rng.randint(0, 120))
        elif kind == 1:
            blob = valid[:rng.randrange(len(valid))]
        elif kind == 2:
            blob = valid + rng.randbytes(rng.randint(1, 32))
        else:
            flipped = bytearray(valid)
            # Distinct bits: flipping one bit twice would restore the valid blob.
            for bit in rng.sample(range(len(valid) * 8), rng.randint(1, 4)):
                flipped[bit // 8] ^= 1 << (bit % 8)
            blob = bytes(flipped)
        assert blob != valid
        try:
            open_sealed(blob, aad)
            returned += 1
        except (InvalidTag, ValueError):
            outcomes += 1
    assert returned == 0 and outcomes == 100_000
    report["fuzz: blobs given to open_sealed"] = outcomes
    report["fuzz: blobs that returned plaintext"] = returned


HOSTILE = [
    "'; DROP TABLE pymem.memory_chunks; --",
    "$$; SELECT pg_sleep(10); $$",
    "%s %(name)s {0} :name \\x00ff",
    "x' OR '1'='1",
    "../../etc/passwd",
    "‮evil‬ ünïcödé 🚀 " + "あ" * 50,
    "a" * 1024,
]


@pytest.mark.parametrize("value", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
async def test_hostile_labels_are_stored_verbatim_and_inert(aconn, admin_conn, value):
    user = f"inject-{uuid.uuid4().hex[:6]}"
    before = admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0]
    chunk_id = await repo.index_memory_chunk(aconn, user, value, value, value, vec(2), {value: value, "k": [value]})
    hit = await repo.get_chunk(aconn, user, chunk_id)
    assert (hit.doc_id, hit.source, hit.text, hit.metadata) == (value, value, value, {value: value, "k": [value]})
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0] == before + 1
    assert await repo.delete_document(aconn, user, value) == 1


PRIVILEGED = {
    "select table": "SELECT * FROM pymem.memory_chunks",
    "alter table": "ALTER TABLE pymem.memory_chunks ADD COLUMN x int",
    "truncate": "TRUNCATE pymem.memory_chunks",
    "disable rls": "ALTER TABLE pymem.memory_chunks DISABLE ROW LEVEL SECURITY",
    "no force rls": "ALTER TABLE pymem.memory_chunks NO FORCE ROW LEVEL SECURITY",
    "drop policy": "DROP POLICY tenant_isolation ON pymem.memory_chunks",
    "set role owner": "SET ROLE pymem_owner",
    "set role auditor": "SET ROLE pymem_auditor",
    "read audit log": "SELECT * FROM pymem.audit_log",
    "read key stats": "SELECT * FROM pymem.key_stats",
    "audit_append": "SELECT pymem.audit_append(repeat('0', 64), 'get', 'write', NULL, NULL, '{}')",
    "lock a chain head": "SELECT pymem.audit_lock_chain(repeat('0', 64))",
    "lock the heads table": "SELECT * FROM pymem.audit_chain_heads FOR UPDATE",
    "change search tuning": "UPDATE pymem.tuning SET exact_search_max_rows = 0",
    "register a key id": "SELECT pymem.register_encryption_key(99)",
    "quarantine rows": "SELECT pymem.quarantine_chunks(repeat('0', 64), '{}', 'does not open')",
    "audit_verify": "SELECT * FROM pymem.audit_verify()",
    "key_usage": "SELECT * FROM pymem.key_usage()",
    "tenants_with_keys": "SELECT * FROM pymem.tenants_with_keys('{1}')",
    "rekey_chunks": "SELECT pymem.rekey_chunks(repeat('0', 64), '{}', '{}', '{}', '{}', '{}', 1, 2::smallint)",
    "create in schema": "CREATE TABLE pymem.evil (x int)",
    "copy out": "COPY pymem.memory_chunks TO STDOUT",
}


@pytest.mark.parametrize("statement", list(PRIVILEGED.values()), ids=list(PRIVILEGED))
def test_app_role_cannot_escalate(report, conn, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    report["privilege: escalation attempts denied"] = report.get(
        "privilege: escalation attempts denied", 0) + 1


def _bad_calls():
    good = vec(1)
    return {
        "index: empty chunk list": lambda c: repo.index_memory_chunks(c, "u", []),
        "index: item not a chunk": lambda c: repo.index_memory_chunks(c, "u", ["text"]),
        "index: mapping missing keys": lambda c: repo.index_memory_chunks(c, "u", [{"doc_id": "d"}]),
        "index: NUL in doc_id": lambda c: repo.index_memory_chunk(c, "u", "a\x00b", "s", "t", good),
        "index: NUL in source": lambda c: repo.index_memory_chunk(c, "u", "d", "s\x00", "t", good),
        "index: non-str source": lambda c: repo.index_memory_chunk(c, "u", "d", None, "t", good),
        "index: string embedding": lambda c: repo.index_memory_chunk(c, "u", "d", "s", "t", "0.1,0.2"),
        "index: 4 KiB doc_id (1024 four-byte characters)": lambda c: repo.index_memory_chunk(
            c, "u", "\U0001f680" * 1024, "s", "t", good),
        "index: lone surrogate in doc_id": lambda c: repo.index_memory_chunk(c, "u", "a\ud800", "s", "t", good),
        "index: deeply nested metadata": lambda c: repo.index_memory_chunk(c, "u", "d", "s", "t", good, _nested(5000)),
        "index: 32 MiB metadata": lambda c: repo.index_memory_chunk(c, "u", "d", "s", "t", good, {"x": "y" * (32 << 20)}),
        "index: 2**2000 in the embedding": lambda c: repo.index_memory_chunk(
            c, "u", "d", "s", "t", [2**2000] + [0.0] * (DIM - 1)),
        "index: complex embedding": lambda c: repo.index_memory_chunk(c, "u", "d", "s", "t", good + 1j),
        "index: all-zero embedding": lambda c: repo.index_memory_chunk(c, "u", "d", "s", "t", np.zeros(DIM)),
        "query: all-zero embedding": lambda c: repo.query_memory(c, "u", "q", np.zeros(DIM)),
        "query: k = True": lambda c: repo.query_memory(c, "u", "q", good, k=True),
        "query: empty user": lambda c: repo.query_memory(c, "", "q", good),
        "query: k = 0": lambda c: repo.query_memory(c, "u", "q", good, k=0),
        "query: k = 1001": lambda c: repo.query_memory(c, "u", "q", good, k=1001),
        "query: k not int": lambda c: repo.query_memory(c, "u", "q", good, k="5"),
        "query: candidates = 0": lambda c: repo.query_memory(c, "u", "q", good, candidates=0),
        "query: NaN embedding": lambda c: repo.query_memory(c, "u", "q", np.full(DIM, np.nan)),
        "query: wrong dimension": lambda c: repo.query_memory(c, "u", "q", np.ones(12)),
        "get: malformed id": lambda c: repo.get_chunk(c, "u", "not-a-uuid"),
        "get: empty user": lambda c: repo.get_chunk(c, "", uuid.uuid4()),
        "open_embedding: malformed id": lambda c: repo.open_embedding(c, "u", 42),
        "delete: empty doc_id": lambda c: repo.delete_document(c, "u", ""),
        "delete: non-str user": lambda c: repo.delete_document(c, 7, "d"),
        "erase: empty user": lambda c: repo.erase_user(c, ""),
    }


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"n": value}
    return value


@pytest.mark.parametrize("case", list(_bad_calls()))
async def test_bad_input_matrix(report, aconn, admin_conn, case):
    before = admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0]
    with pytest.raises(ValueError) as info:
        await _bad_calls()[case](aconn)
    assert str(info.value)  # a message a person can act on
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0] == before
    assert aconn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing left half-open
    report["bad input: cases rejected with ValueError, rows unchanged"] = report.get(
        "bad input: cases rejected with ValueError, rows unchanged", 0) + 1
