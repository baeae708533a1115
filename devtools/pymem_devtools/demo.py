"""``pymem-dev demo``: migrate, index two tenants' notes, search by meaning, and show isolation at work.

Runs on the embedded Postgres unless ``PYMEM_DATABASE_URL`` is set. Keys that are
not in the environment are generated for this run only and never written anywhere.
The embedder is all-MiniLM-L6-v2 on ONNX Runtime (:mod:`pymem_devtools.minilm`), exported from
the installed weights package on the first run if ``onnx_models/`` has no export yet.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pymem import migrations, repository
from pymem.config import get_settings
from pymem.db import aconnect, connect, database_url
from pymem.errors import MigrationRefused
from pymem.onnx_export import DEFAULT_RERANKER, ExportError
from pymem.security import hmac_user

from .keys import ephemeral_keys
from .minilm import (
    DEFAULT_DIR,
    EmbedderUnavailableError,
    MiniLMEmbedder,
    ensure_exported,
)

# One document per note, so that "the right note" is a doc_id.
TENANTS = {
    "alice@example.com": [
        ("osprey-launch", "notes", "Project Osprey launches on March 3rd after the security review."),
        ("osprey-checklist", "notes", "Osprey launch checklist: rotate keys, run the isolation suite, brief support."),
        ("dentist", "journal", "Dentist appointment moved to Friday at 10am."),
        ("sourdough", "web", "Sourdough needs a 12 hour cold proof for an open crumb."),
    ],
    "bob@example.com": [
        ("lisbon-flight", "email", "Flight to Lisbon departs Tuesday; hotel is near the river."),
        ("packing", "email", "Pack the camera charger and the travel adapter."),
        ("quarterly-report", "chat", "Quarterly report draft is due on the 15th."),
        ("tomatoes", "notes", "Tomatoes need watering every second day in July."),
    ],
}


@dataclass(frozen=True)
class DemoQuery:
    """A query and the note that answers it. When that note is another tenant's, the
    query is an isolation probe: the answer must not come back."""

    user_id: str
    text: str
    answer_doc: str


# No query shares a content word with its answer: only meaning connects them.
QUERIES = [
    DemoQuery("alice@example.com", "what date is the release?", "osprey-launch"),
    DemoQuery("bob@example.com", "what date is the release?", "osprey-launch"),
    DemoQuery("alice@example.com", "I have to get my teeth checked", "dentist"),
    DemoQuery("alice@example.com", "how long should bread rest in the fridge?", "sourdough"),
    DemoQuery("bob@example.com", "when is my plane to Portugal?", "lisbon-flight"),
    DemoQuery("bob@example.com", "what electronics do I need to bring along?", "packing"),
    DemoQuery("bob@example.com", "how often should I irrigate the vegetable patch?", "tomatoes"),
]


@dataclass(frozen=True)
class QueryOutcome:
    """What one demo query returned: doc ids, best first."""

    query: DemoQuery
    ranked_docs: list[str]

    @property
    def probe(self) -> bool:
        """Whether the answer is another tenant's note."""
        return self.query.answer_doc not in _docs_of(self.query.user_id)

    @property
    def ok(self) -> bool:
        """A probe: nothing of another tenant came back. Otherwise: the answer ranked first."""
        if self.probe:
            return set(self.ranked_docs) <= _docs_of(self.query.user_id)
        return bool(self.ranked_docs) and self.ranked_docs[0] == self.query.answer_doc


def _docs_of(user_id: str) -> set[str]:
    return {doc for doc, _, _ in TENANTS[user_id]}


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


def _reranker_lines() -> list[str]:
    from pymem.rerank import reranker_status

    status = reranker_status()
    if status["available"]:
        device = f" on {status['device']}" if status["device"] else ""
        return [f"reranker: ON, {status['model_dir']}{device}"]
    lines = [f"reranker: OFF ({status['reason']})"]
    if status["enabled"]:
        lines.append("to turn it on, export a cross-encoder once (needs the internet): "
                     f"pymem export-reranker {DEFAULT_RERANKER} --out {status['model_dir']} --int8")
    return lines


def _verdict(outcome: QueryOutcome) -> str:
    answer = outcome.query.answer_doc
    if outcome.probe:
        return (f"none of another tenant's notes: {answer!r} is invisible to this tenant" if outcome.ok
                else "ANOTHER TENANT'S NOTE CAME BACK: tenant isolation is broken")
    if outcome.ok:
        return f"right note first: {answer!r}, found by meaning (the query shares no keyword with it)"
    return f"WRONG: expected {answer!r} first"


async def run_demo(dsn: str, embedder: MiniLMEmbedder) -> list[QueryOutcome]:
    """Index both tenants' notes, run :data:`QUERIES` and the SQL-level RLS checks, printing
    as it goes.

    Args:
        dsn: a database migrated for ``embedder.dimension``; its login must be able to
            ``SET ROLE pymem_app``.
        embedder: what embeds the notes and the queries.

    Returns:
        One :class:`QueryOutcome` per query, in :data:`QUERIES` order.
    """
    conn = await aconnect(dsn)
    # The demo's login may be a superuser, who bypasses RLS; act as the app role.
    await conn.execute("SET ROLE pymem_app")
    outcomes = []
    try:
        with _step("index: each tenant's notes, sealed client-side (batch path)"):
            for user_id, notes in TENANTS.items():
                # Start clean, so that re-runs with the same keys do not duplicate notes.
                await repository.erase_user(conn, user_id)
                vectors = embedder.embed([text for _, _, text in notes])
                chunks = [repository.ChunkInput(doc, src, text, vector, {"n": i})
                          for i, ((doc, src, text), vector) in enumerate(zip(notes, vectors))]
                ids = await repository.index_memory_chunks(conn, user_id, chunks)
                print(f"   {_tenant_label(user_id)}: {len(ids)} chunks")

        for query in QUERIES:
            with _step(f"query as {_tenant_label(query.user_id)}: {query.text!r}"):
                hits = await repository.query_memory(conn, query.user_id, query.text,
                                                     embedder.embed([query.text])[0], k=3)
                for hit in hits:
                    print(f"   #{hit.rank} doc={hit.doc_id:<16} distance={hit.distance:.3f} "
                          f"score={hit.score:.3f}  {hit.text[:60]}")
                outcomes.append(QueryOutcome(query, [hit.doc_id for hit in hits]))
                print(f"   -> {_verdict(outcomes[-1])}")

        with _step("RLS at the SQL level, as pymem_app"):
            try:
                async with conn.transaction():
                    await conn.execute("SELECT * FROM pymem.search_chunks(%s, gen_random_uuid(), %b::public.vector, 100)",
                                       ("0" * 64, embedder.embed(["Osprey"])[0]))
            except psycopg.errors.InsufficientPrivilege as exc:
                print(f"   a search for a tenant outside its tenant context: refused ({exc.diag.message_primary})")
            try:
                await conn.execute("SELECT * FROM pymem.memory_chunks")
            except psycopg.errors.InsufficientPrivilege as exc:
                print(f"   direct SELECT on the table: denied ({exc.diag.message_primary})")
    finally:
        await conn.close()
    return outcomes


def _audit_summary(dsn: str) -> None:
    with connect(dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE pymem_auditor")
        rows = conn.execute("SELECT operation, count(*) FROM pymem.audit_log GROUP BY 1 ORDER BY 1").fetchall()
        problems = conn.execute("SELECT count(*) FROM pymem.audit_verify()").fetchone()[0]
    print("   audit rows by operation: " + ", ".join(f"{op}={n}" for op, n in rows))
    print(f"   hash chain: {'intact' if problems == 0 else f'{problems} problem(s)'}")


def main(embed_model_dir: str | Path = DEFAULT_DIR) -> int:
    """Run the demo; returns the process exit code (1 if a query missed, 2 if it cannot run).

    Args:
        embed_model_dir: where the all-MiniLM-L6-v2 export is, or is made if missing.
    """
    total = time.perf_counter()
    settings = get_settings()
    with _step("embedder"):
        try:
            _, exported = ensure_exported(embed_model_dir)
            embedder = MiniLMEmbedder(embed_model_dir)
        except (ExportError, EmbedderUnavailableError) as exc:
            print(f"pymem-dev demo: no embedder: {exc}", file=sys.stderr)
            return 2
        if exported:
            print(f"   exported it now from the installed weights package into {embed_model_dir}")
        print(f"   embedder: {embedder.describe()}")
    with _step("database"):
        dsn = database_url()
        where = "PYMEM_DATABASE_URL" if settings.database_url else \
            f"embedded PostgreSQL {settings.pg_version} in {settings.home}"
        print(f"   {where}")
        # The dimension is fixed when the schema is first created; another one is refused.
        try:
            migrations.upgrade(dsn, embedding_dim=embedder.dimension)
        except MigrationRefused as exc:
            print(f"pymem-dev demo: {exc}; point PYMEM_DATABASE_URL at a fresh database"
                  + ("" if settings.database_url else " or set PYMEM_HOME to a new directory"), file=sys.stderr)
            return 2
        print(f"   migrated to head (alembic), {embedder.dimension}-d embeddings")
    with _step("keys"):
        _ephemeral_keys()
    for line in _reranker_lines():
        print(f"   {line}")
    outcomes = asyncio.run(run_demo(dsn, embedder))
    with _step("audit (as pymem_auditor)"):
        _audit_summary(dsn)
    searches = [o for o in outcomes if not o.probe]
    probes = [o for o in outcomes if o.probe]
    print(f"\nsemantic search: {sum(o.ok for o in searches)}/{len(searches)} queries ranked the right "
          f"note first; isolation: {sum(o.ok for o in probes)}/{len(probes)} probes saw nothing of "
          "the other tenant")
    print(f"demo finished in {time.perf_counter() - total:.2f} s")
    return 0 if all(o.ok for o in outcomes) else 1
