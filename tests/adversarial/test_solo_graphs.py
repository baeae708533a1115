"""Revision 0017's solo graphs against an app login without the keys: it may register
any new tenant hash (with a proof of its own choosing) and write rows under it. A hash
that shares the victim's first 32 hex digits (a solo graph's name is 128 bits of the
sha256 of the hash, not a prefix of it) neither gets the victim's graph dropped nor
takes its name; an index under the victim's graph name with another predicate is
not counted as the victim's graph. (Found by the review of 0017 against its first
cut, which named graphs after a prefix of the hash.)
"""

from __future__ import annotations

import os
import uuid

import pytest

from pymem import repository as repo
from pymem.db import aconnect, connect
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.solo_graphs import apply_solo_graphs, plan_solo_graphs
from tests.utils import DIM, vec

pytestmark = pytest.mark.single_node  # the naming and the plan are the coordinator's; one node shows them

_PUT = ("SELECT pymem.put_chunks(%s::pg_catalog.bpchar, %s::pg_catalog.uuid[], %s::pg_catalog.text[],"
        " %s::pg_catalog.text[], %s::pg_catalog.bytea[], %s::pg_catalog.bytea[], %s::pg_catalog.bytea[],"
        " %s::pg_catalog.int4[], %b::public.vector[], 2::pg_catalog.int2)")


def _twin(user_hash: str) -> str:
    """Another 64-hex hash with the same first 32 digits."""
    return user_hash[:32] + ("1" if user_hash[32] == "0" else "0") + user_hash[33:]


def _keyless_put(app_url: str, user_hash: str, count: int, seed: int = 10_000) -> None:
    """What a login with pymem_app and no keys can do: register a hash of its choosing
    with a random proof, and write junk rows under it."""
    blobs = [bytes(40)] * count
    with connect(app_url) as attacker, attacker.transaction():
        attacker.execute("SELECT pymem.enter_tenant(%s::pg_catalog.bpchar, %s::pg_catalog.bytea)",
                         (user_hash, os.urandom(32)))
        attacker.execute(_PUT, (user_hash, [uuid.uuid4() for _ in range(count)], ["d"] * count, ["s"] * count,
                                blobs, blobs, blobs, [1] * count, [vec(seed + i) for i in range(count)]))


async def _victim(server, name: str, rows: int) -> tuple[str, str, str]:
    admin = server.fresh_database(name, embedding_dim=DIM)
    server.login_role("pymem_test_app", ["pymem_app"])
    app_url = server.url(name, user="pymem_test_app")
    app = await aconnect(app_url)
    try:
        await repo.index_memory_chunks(app, "solo-twin-victim",
                                       [ChunkInput("d", "s", f"v {i}", vec(i)) for i in range(rows)])
    finally:
        await app.close()
    return admin, app_url, hmac_user("solo-twin-victim")


def _definition_of_graph_named_for(conn, user_hash: str) -> str:
    row = conn.execute("SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = 'pymem'"
                       " AND indexname = pymem.solo_graph_name(%s)", (user_hash,)).fetchone()
    return row[0] if row else ""


async def test_one_junk_row_under_a_twin_hash_does_not_drop_the_victims_solo_graph(server, second_round):
    admin, app_url, victim = await _victim(server, "pymem_rt_twin_drop", 40)
    with connect(admin) as conn:
        conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 30")
        apply_solo_graphs(conn, plan_solo_graphs(conn), progress=False)
        (graph,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (victim,)).fetchone()
    _keyless_put(app_url, _twin(victim), 1)
    with connect(admin) as conn:
        plan = plan_solo_graphs(conn)
        assert graph not in plan.drop, "a 1-row twin gets the victim's valid solo graph dropped"
        apply_solo_graphs(conn, plan, progress=False)
        assert conn.execute("SELECT pymem.solo_graph_rows(%s)", (victim,)).fetchone()[0] is not None
        assert victim in _definition_of_graph_named_for(conn, victim)
    second_round("A7: a twin hash drops the victim's solo graph")


async def test_a_larger_twin_cannot_take_the_victims_solo_graph_name(server, second_round):
    admin, app_url, victim = await _victim(server, "pymem_rt_twin_take", 40)
    twin = _twin(victim)
    _keyless_put(app_url, twin, 50)  # larger than the victim: built first
    with connect(admin) as conn:
        conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 30")
        apply_solo_graphs(conn, plan_solo_graphs(conn), progress=False)
        # The index the victim's search looks up by name has the victim's predicate ...
        assert victim in _definition_of_graph_named_for(conn, victim)
        assert twin in _definition_of_graph_named_for(conn, twin)
        # ... and a second run does not call a foreign index "kept".
        plan = plan_solo_graphs(conn)
        assert (plan.build, plan.drop, plan.kept) == ([], [], 2)
    second_round("A7: a twin hash takes the victim's solo graph name")


async def test_an_index_under_the_victims_graph_name_with_another_predicate_is_rebuilt(server, second_round):
    admin, _, victim = await _victim(server, "pymem_rt_foreign_graph", 40)
    with connect(admin) as conn:
        conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 30")
        (graph,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (victim,)).fetchone()
        # Under the victim's name, an index no search of the victim can use.
        conn.execute(f"CREATE INDEX {graph} ON pymem.memory_chunks USING hnsw (embedding vector_cosine_ops)"
                     f" WHERE user_hash = '{_twin(victim)}'")
        plan = plan_solo_graphs(conn)
        assert plan.drop == [graph] and plan.build == [(victim, 40)]
        apply_solo_graphs(conn, plan, progress=False)
        assert victim in _definition_of_graph_named_for(conn, victim)
    second_round("A7: an index under the victim's graph name with another predicate")
