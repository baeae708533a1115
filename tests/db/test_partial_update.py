"""Partial updates (update_memory_chunks): only what is given changes, atomically, audited as an
update; as the app role against the real database (raw rows read as a superuser)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.errors import ChunkNotFound
from pymem.freshness import verify_rows
from pymem.partial_update import ChunkUpdate, update_memory_chunks
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from tests.utils import vec

pytestmark = pytest.mark.citus


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4()}"


def row(i: int, **kwargs) -> ChunkInput:
    return ChunkInput(f"doc-{i}", "notes", kwargs.pop("text", f"note {i}"), vec(i),
                      kwargs.pop("metadata", {"n": i}), **kwargs)


async def test_only_the_fields_given_change(aconn, tenant):
    [gen_id] = (await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a"), row(2, id="b"), row(3)]))[2:]
    assert await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", metadata={"n": 10, "tag": "x"}),
                                                      ChunkUpdate("b", text="rewritten"),
                                                      ChunkUpdate(str(gen_id), embedding=vec(9), source="edited")]) == 3
    a, b, gen = await repo.get_memory_chunks(aconn, tenant, ["a", "b", str(gen_id)], include_embedding=True)
    assert (a.text, a.metadata, a.doc_id) == ("note 1", {"n": 10, "tag": "x"}, "doc-1")
    assert (b.text, b.metadata) == ("rewritten", {"n": 2})
    assert gen.external_id == gen_id and gen.source == "edited" and gen.text == "note 3"
    assert (gen.embedding == vec(9)).all()
    # The new metadata is filterable, the old value is not; the new text is searchable by keyword.
    assert [h.external_id for h in await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False,
                                                           where={"tag": "x"})] == ["a"]
    assert await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False, where={"n": 1}) == []
    hits = await repo.query_memory(aconn, tenant, "rewritten", vec(7), k=1, rerank=False, hybrid=True)
    assert hits[0].external_id == "b" and hits[0].keyword_score


async def test_an_update_is_audited_as_one_and_the_rows_stay_fresh(aconn, admin_conn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a")])
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", text="new")])
    ops = admin_conn.execute("SELECT operation, phase FROM pymem.audit_log WHERE user_hash = %s ORDER BY chain_pos",
                             (hmac_user(tenant),)).fetchall()
    assert ops[-1] == ("update", "write") and ("get", "intent") in ops
    created, updated = admin_conn.execute(
        "SELECT created_at, updated_at FROM pymem.memory_chunks WHERE user_hash = %s", (hmac_user(tenant),)).fetchone()
    assert updated is not None and updated > created  # it keeps when it was created
    assert verify_audit_log(admin_conn) == []
    assert verify_rows(admin_conn, [hmac_user(tenant)]).problems == []


async def test_a_missing_id_or_a_bad_value_writes_nothing(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a")])
    with pytest.raises(ChunkNotFound):
        await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", text="x"), ChunkUpdate("nope", text="y")])
    with pytest.raises(ValueError):
        await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", text="x"), ChunkUpdate("a", text="y")])
    with pytest.raises(ValueError):
        await update_memory_chunks(aconn, tenant, [ChunkUpdate("a")])
    with pytest.raises(ValueError):
        await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", embedding=[1.0, 2.0])])
    [a] = await repo.get_memory_chunks(aconn, tenant, ["a"])
    assert a.text == "note 1"


async def test_another_tenant_cannot_update_the_row(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a")])
    with pytest.raises(ChunkNotFound):
        await update_memory_chunks(aconn, f"other-{uuid.uuid4()}", [ChunkUpdate("a", text="mine now")])
    assert (await repo.get_memory_chunks(aconn, tenant, ["a"]))[0].text == "note 1"


async def test_a_row_changed_between_the_read_and_the_write_is_not_overwritten(app_url, aconn, tenant):
    """The database replaces a row only if it is still as the update read it: a write that
    lands in between is never lost; the update reads again and applies on top of it."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a", metadata={"n": 1, "k": "old"})])
    from pymem import partial_update

    real = partial_update.write_sealed_rows
    raced = []

    async def racing(conn, *args, **kwargs):
        if not raced:  # another writer replaces the row after the read, before the write
            raced.append(True)
            other = await psycopg.AsyncConnection.connect(app_url)
            try:
                await repo.upsert_memory_chunks(other, tenant, [row(1, id="a", text="theirs", metadata={"n": 1})])
            finally:
                await other.close()
        return await real(conn, *args, **kwargs)

    partial_update.write_sealed_rows = racing
    try:
        assert await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", metadata={"n": 2})]) == 1
    finally:
        partial_update.write_sealed_rows = real
    [a] = await repo.get_memory_chunks(aconn, tenant, ["a"])
    assert (a.text, a.metadata) == ("theirs", {"n": 2})


async def test_concurrent_updates_of_one_row_all_apply(app_url, tenant):
    async with await psycopg.AsyncConnection.connect(app_url) as conn:
        await repo.upsert_memory_chunks(conn, tenant, [row(1, id="a")])
    conns = [await psycopg.AsyncConnection.connect(app_url) for _ in range(3)]
    try:
        done = await asyncio.gather(*(update_memory_chunks(c, tenant, [ChunkUpdate("a", source=f"s{i}")])
                                      for i, c in enumerate(conns)), return_exceptions=True)
    finally:
        for c in conns:
            await c.close()
    # Each either applied whole or gave up after its attempts; none half-applied.
    assert all(d == 1 or isinstance(d, psycopg.errors.SerializationFailure) for d in done), done
    async with await psycopg.AsyncConnection.connect(app_url) as conn:
        [a] = await repo.get_memory_chunks(conn, tenant, ["a"])
    assert a.source in {f"s{i}" for i, d in enumerate(done) if d == 1}


async def test_an_update_that_read_a_row_put_back_from_a_copy_is_reported(aconn, admin_conn, tenant):
    """An older copy of a row put back in place of its latest write is reported by verify-rows;
    an update that reads it would make it current, keeping its stale fields. The update names
    the records it read (update_from), so verify-rows still reports it (this revision's DBA
    attack review)."""
    user_hash = hmac_user(tenant)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a", metadata={"role": "admin"})])
    old = admin_conn.execute("SELECT * FROM pymem.memory_chunks WHERE user_hash = %s", (user_hash,)).fetchone()
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, id="a", metadata={"role": "revoked"})])
    columns = [d.name for d in admin_conn.execute("SELECT * FROM pymem.memory_chunks LIMIT 0").description]
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")  # the audit trigger off
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s", (user_hash,))
        admin_conn.execute(psycopg.sql.SQL("INSERT INTO pymem.memory_chunks ({}) VALUES ({})").format(
            psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns)),
            psycopg.sql.SQL(", ").join(psycopg.sql.Placeholder() * len(columns))), old)
    assert verify_rows(admin_conn, [user_hash]).problems  # the put-back row, before the update
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("a", text="text v3")])
    problems = [p.problem for p in verify_rows(admin_conn, [user_hash]).problems]
    assert any("updated from a copy" in p for p in problems), problems
