"""``pymem demo``: migrate, index two tenants' notes, query, and show isolation at work.

Runs on the embedded Postgres unless ``PYMEM_DATABASE_URL`` is set. Keys that are
not in the environment are generated for this run only and never written anywhere.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

import psycopg

from . import migrations, repository
from .config import get_settings
from .db import aconnect, connect, database_url
from .embedding import HashingEmbedder
from .scratch import ephemeral_keys
from .security import hmac_user

TENANTS = {
    "alice@example.com": [
        ("roadmap", "notes", "Project Osprey launches on March 3rd after the security review."),
        ("roadmap", "notes", "Osprey launch checklist: rotate keys, run the isolation suite, brief support."),
        ("health", "journal", "Dentist appointment moved to Friday at 10am."),
        ("recipes", "web", "Sourdough needs a 12 hour cold proof for an open crumb."),
    ],
    "bob@example.com": [
        ("trip", "email", "Flight to Lisbon departs Tuesday; hotel is near the river."),
        ("trip", "email", "Pack the camera charger and the travel adapter."),
        ("work", "chat", "Quarterly report draft is due on the 15th."),
        ("garden", "notes", "Tomatoes need watering every second day in July."),
    ],
}
QUERIES = [
    ("alice@example.com", "when does Osprey launch"),
    ("bob@example.com", "when does Osprey launch"),
    ("bob@example.com", "flight to Lisbon"),
]


@contextmanager
def _step(title: str):
    start = time.perf_counter()
    print(f"\n== {title}")
    yield
    print(f"   ({(time.perf_counter() - start) * 1000:.1f} ms)")


def _tenant_label(user_id: str) -> str:
    # The demo prints the tenant's user_hash prefix, as logs should: never the raw id.
    return f"tenant {user_id.split('@')[0]} (user_hash {hmac_user(user_id)[:12]}…)"


def _ephemeral_keys() -> None:
    generated = ephemeral_keys()
    if generated:
        print(f"   DEMO KEYS: generated ephemeral {', '.join(generated)} for this run only"
              " (in memory, never written to disk; data sealed now cannot be opened by a later run)")
    else:
        print("   using MEMORY_ENCRYPTION_KEY / MEMORY_TENANT_HMAC_KEY from the environment")


def _reranker_line() -> str:
    from .rerank import reranker_status

    status = reranker_status()
    if status["available"]:
        return f"reranker: ON, {status['model_dir']} on {status['device']}"
    return f"reranker: OFF ({status['reason']})"


async def _run(dsn: str, embedder: HashingEmbedder) -> None:
    conn = await aconnect(dsn)
    # The demo's login may be a superuser, who bypasses RLS; act as the app role.
    await conn.execute("SET ROLE pymem_app")
    try:
        with _step("index: each tenant's notes, sealed client-side (batch path)"):
            for user_id, notes in TENANTS.items():
                # Start clean, so that re-runs with the same keys do not duplicate notes.
                await repository.erase_user(conn, user_id)
                chunks = [repository.ChunkInput(doc, src, text, embedder.embed(text), {"n": i})
                          for i, (doc, src, text) in enumerate(notes)]
                ids = await repository.index_memory_chunks(conn, user_id, chunks)
                print(f"   {_tenant_label(user_id)}: {len(ids)} chunks")

        for user_id, query in QUERIES:
            with _step(f"query as {_tenant_label(user_id)}: {query!r}"):
                hits = await repository.query_memory(conn, user_id, query, embedder.embed(query), k=3)
                for hit in hits:
                    print(f"   #{hit.rank} doc={hit.doc_id:<8} distance={hit.distance:.3f} "
                          f"score={hit.score:.3f}  {hit.text[:60]}")
                if not any(h.doc_id == "roadmap" for h in hits) and "Osprey" in query:
                    print("   -> no 'roadmap' document: alice's Osprey notes are invisible to this tenant")

        with _step("RLS at the SQL level, as pymem_app"):
            try:
                async with conn.transaction():
                    await conn.execute("SELECT * FROM pymem.search_chunks(%s, gen_random_uuid(), %b::public.vector, 100)",
                                       ("0" * 64, embedder.embed("Osprey")))
            except psycopg.errors.InsufficientPrivilege as exc:
                print(f"   a search for a tenant outside its tenant context: refused ({exc.diag.message_primary})")
            try:
                await conn.execute("SELECT * FROM pymem.memory_chunks")
            except psycopg.errors.InsufficientPrivilege as exc:
                print(f"   direct SELECT on the table: denied ({exc.diag.message_primary})")
    finally:
        await conn.close()


def _audit_summary(dsn: str) -> None:
    with connect(dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE pymem_auditor")
        rows = conn.execute("SELECT operation, count(*) FROM pymem.audit_log GROUP BY 1 ORDER BY 1").fetchall()
        problems = conn.execute("SELECT count(*) FROM pymem.audit_verify()").fetchone()[0]
    print("   audit rows by operation: " + ", ".join(f"{op}={n}" for op, n in rows))
    print(f"   hash chain: {'intact' if problems == 0 else f'{problems} problem(s)'}")


def main() -> int:
    """Run the demo; returns the process exit code."""
    total = time.perf_counter()
    settings = get_settings()
    with _step("database"):
        dsn = database_url()
        where = "PYMEM_DATABASE_URL" if settings.database_url else \
            f"embedded PostgreSQL {settings.pg_version} in {settings.home}"
        print(f"   {where}")
        migrations.upgrade(dsn)
        print("   migrated to head (alembic)")
    with _step("keys"):
        _ephemeral_keys()
    embedder = HashingEmbedder(settings.embedding_dim)
    print(f"\n   embedder: {embedder.name}")
    print(f"   {_reranker_line()}")
    asyncio.run(_run(dsn, embedder))
    with _step("audit (as pymem_auditor)"):
        _audit_summary(dsn)
    print(f"\ndemo finished in {time.perf_counter() - total:.2f} s")
    return 0
