"""Revision 0023: embeddings stored at half precision (PYMEM_EMBEDDING_TYPE=halfvec), up to
4,000 dimensions, chosen at migration; as the app role against the real database."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from pymem import migrations
from pymem import repository as repo
from pymem.db import aconnect
from pymem.doctor import check_schema
from pymem.errors import MigrationRefused
from pymem.repository import ChunkInput
from pymem.security import EmbeddingMismatch, hmac_user
from tests.utils import vec

pytestmark = pytest.mark.single_node  # Citus: tests/citus/test_citus.py runs the default (vector) schema

WIDE = 3072  # an embedding HNSW cannot index as vector (at most 2,000 dimensions)


def unit(seed: int, dim: int) -> np.ndarray:
    return vec(seed, dim)


@pytest.fixture(scope="module")
def wide_url(server) -> str:
    return server.fresh_database("pymem_halfvec", embedding_dim=WIDE, embedding_type="halfvec")


@pytest.fixture(scope="module")
def wide_app(server, wide_url) -> str:
    server.login_role("pymem_halfvec_app", ["pymem_app"])
    return server.url("pymem_halfvec", user="pymem_halfvec_app")


def column_and_graphs(url: str) -> tuple[str, set[str]]:
    with psycopg.connect(url) as conn:
        column = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                              " WHERE attrelid = 'pymem.memory_chunks'::regclass AND attname = 'embedding'").fetchone()
        opclasses = conn.execute("SELECT DISTINCT o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0]"
                                 " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
                                 " WHERE i.indrelid = 'pymem.memory_chunks'::regclass AND a.amname = 'hnsw'")
        return column[0], {r[0] for r in opclasses}


async def test_a_3072_dimension_schema_stores_halfvec_and_searches_on_its_graphs(wide_url, wide_app):
    assert column_and_graphs(wide_url) == ("halfvec(3072)", {"halfvec_cosine_ops"})
    with psycopg.connect(wide_url) as admin:
        assert [f for f in check_schema(admin) if not f.ok] == []  # doctor accepts the deployment's type
        admin.execute("UPDATE pymem.tuning SET exact_search_max_rows = 0")  # every search on its bucket graph
    tenant = f"wide-{uuid.uuid4()}"
    conn = await aconnect(wide_app)
    try:
        rows = [ChunkInput("d", "s", f"note {i} about ticket T-{1000 + i}", unit(i, WIDE), {"n": i % 3}, id=f"c{i}")
                for i in range(30)]
        await repo.upsert_memory_chunks(conn, tenant, rows)
        hits = await repo.query_memory(conn, tenant, "q", unit(7, WIDE), k=5, rerank=False, include_embedding=True)
        assert hits[0].external_id == "c7" and hits[0].distance < 1e-3  # rounding, not another row
        assert np.array_equal(hits[0].embedding, unit(7, WIDE))  # the sealed float32 copy is what opens
        filtered = await repo.query_memory(conn, tenant, "q", unit(7, WIDE), k=30, rerank=False,
                                           where={"n": {"$ne": 1}})
        assert {h.external_id for h in filtered} == {f"c{i}" for i in range(30) if i % 3 != 1}
        hybrid = await repo.query_memory(conn, tenant, "which note is T-1023", unit(0, WIDE), k=1, rerank=False,
                                         hybrid=True)
        assert hybrid[0].external_id == "c23"
        [got] = await repo.get_memory_chunks(conn, tenant, ["c3"], include_embedding=True)
        assert np.array_equal(got.embedding, unit(3, WIDE))
    finally:
        await conn.close()
        with psycopg.connect(wide_url) as admin:
            admin.execute("UPDATE pymem.tuning SET exact_search_max_rows = DEFAULT")


async def test_a_searchable_copy_changed_beyond_rounding_is_caught(wide_url, wide_app):
    tenant = f"wide-{uuid.uuid4()}"
    conn = await aconnect(wide_app)
    try:
        await repo.upsert_memory_chunks(conn, tenant, [ChunkInput("d", "s", "t", unit(1, WIDE), id="x")])
        with psycopg.connect(wide_url) as admin:  # the superuser moves the row's searchable copy
            admin.execute("UPDATE pymem.memory_chunks SET embedding = %s::public.vector::public.halfvec"
                          " WHERE user_hash = %s", (unit(2, WIDE).tolist(), hmac_user(tenant)))
        with pytest.raises(EmbeddingMismatch):
            await repo.get_memory_chunks(conn, tenant, ["x"])
    finally:
        await conn.close()


def test_the_type_is_fixed_and_a_wide_schema_cannot_go_below_0023(wide_url):
    with pytest.raises(MigrationRefused, match="stores halfvec embeddings"):
        migrations.upgrade(wide_url, embedding_type="vector")
    with pytest.raises(MigrationRefused, match="3072-dimensional"):
        migrations.upgrade(wide_url, embedding_dim=2048, embedding_type="halfvec")
    migrations.upgrade(wide_url, embedding_dim=WIDE, embedding_type="halfvec")  # the same, or none, is fine
    with pytest.raises(Exception, match="cannot go below revision 0023"):
        migrations.downgrade(wide_url, "0022")
    assert column_and_graphs(wide_url)[0] == "halfvec(3072)"


async def test_an_upgrade_to_0023_stores_an_existing_schema_as_halfvec_and_back(server, monkeypatch):
    url = server.fresh_database("pymem_to_halfvec", embedding_dim=384, migrate=False)
    migrations.upgrade(url, "0022")
    server.login_role("pymem_to_halfvec_app", ["pymem_app"])
    app = server.url("pymem_to_halfvec", user="pymem_to_halfvec_app")
    tenant = f"mover-{uuid.uuid4()}"

    async def top_and_own() -> tuple[str, bool]:
        conn = await aconnect(app)
        try:
            [hit] = await repo.query_memory(conn, tenant, "q", vec(4), k=1, rerank=False, include_embedding=True)
            return hit.external_id, np.array_equal(hit.embedding, vec(4))
        finally:
            await conn.close()

    conn = await aconnect(app)
    try:
        async def at_0022(_conn):  # pymem.embedding_type() comes with 0023: this is a 0022 schema of 384-d vector
            return 384, False

        with monkeypatch.context() as patched:
            patched.setattr(repo, "_embedding_shape", at_0022)
            await repo.upsert_memory_chunks(conn, tenant, [ChunkInput("d", "s", f"t{i}", vec(i), id=f"r{i}")
                                                           for i in range(10)])
    finally:
        await conn.close()
    migrations.upgrade(url, embedding_type="halfvec")
    assert column_and_graphs(url) == ("halfvec(384)", {"halfvec_cosine_ops"})
    assert await top_and_own() == ("r4", True)  # every row converted still opens and is found
    migrations.downgrade(url, "0022")
    assert column_and_graphs(url) == ("vector(384)", {"vector_cosine_ops"})
    with monkeypatch.context() as patched:  # a 0022 schema again (read by this release's client)
        patched.setattr(repo, "_embedding_shape", at_0022)
        assert await top_and_own() == ("r4", True)
    migrations.upgrade(url, "head")  # without a type asked for, a vector schema stays vector ...
    assert column_and_graphs(url)[0] == "vector(384)"
    with pytest.raises(MigrationRefused, match="stores vector embeddings"):
        migrations.upgrade(url, embedding_type="halfvec")  # ... and keeps it past 0023


async def test_an_embedding_float16_cannot_hold_is_refused_before_anything_is_sent(wide_app):
    """float16 ends at 65504, and values under about 6e-8 round to zero: such an embedding
    raised the server's error (which quoted a value) or was stored as zeros (the 0023 review)."""
    tenant = f"wide-{uuid.uuid4()}"
    conn = await aconnect(wide_app)
    try:
        for bad in (unit(1, WIDE) * np.float32(1e6), unit(1, WIDE) * np.float32(1e-9)):
            with pytest.raises(ValueError, match="halfvec"):
                await repo.upsert_memory_chunks(conn, tenant, [ChunkInput("d", "s", "t", bad, id="x")])
            with pytest.raises(ValueError, match="halfvec"):
                await repo.query_memory(conn, tenant, "q", bad, rerank=False)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["float16", "", "vector;"])
def test_a_bad_embedding_type_is_refused_with_a_clear_error(server, kind):
    url = server.fresh_database("pymem_halfvec_bad", embedding_dim=8, migrate=False)
    with pytest.raises(MigrationRefused, match="embedding type must be one of"):
        migrations.upgrade(url, embedding_type=kind)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('pymem.memory_chunks')").fetchone()[0] is None


@pytest.mark.parametrize("swap", [
    # halfvec's distance function pointed at its inner product: the ranking turns upside down
    "CREATE OR REPLACE FUNCTION public.cosine_distance(public.halfvec, public.halfvec) RETURNS float8"
    " LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS '$libdir/vector', 'halfvec_inner_product'",
    # the cast every search returns the embedding through, re-pointed inside the extension
    "CREATE FUNCTION public.h2v(public.halfvec, integer, boolean) RETURNS public.vector LANGUAGE sql IMMUTABLE"
    " RETURN public.halfvec_to_vector($1, $2, $3);"
    " ALTER EXTENSION vector DROP CAST (public.halfvec AS public.vector);"
    " DROP CAST (public.halfvec AS public.vector);"
    " CREATE CAST (public.halfvec AS public.vector) WITH FUNCTION public.h2v(public.halfvec, integer, boolean)"
    " AS ASSIGNMENT; ALTER EXTENSION vector ADD CAST (public.halfvec AS public.vector)",
], ids=["distance", "cast"])
def test_halfvec_functions_the_searches_use_are_fingerprinted(server, swap):
    """Doctor named a replaced vector function, not a halfvec one (the 0023 review)."""
    url = server.fresh_database("pymem_halfvec_swap", embedding_dim=8, embedding_type="halfvec")
    with psycopg.connect(url, autocommit=True) as admin:
        assert [f for f in check_schema(admin) if not f.ok] == []
        admin.execute(swap)
        assert "halfvec" in " ".join(f.detail for f in check_schema(admin) if not f.ok)
