"""A clustered, multi-tenant dataset for the search benchmark.

Vectors come from a mixture of clusters (so ANN is not trivial), and each tenant
draws from a few clusters of its own, as a user's memories share topics. Within a
cluster, points vary along a 16-d subspace of their own plus a little isotropic
noise: text embeddings have a low intrinsic dimension, and isotropic noise in all
384 dimensions makes every point nearly equidistant (a case no graph index, and no
real corpus, looks like).
Tenant sizes follow a Zipf law: the largest holds about 30% of the rows, and many
hold under 50.

:func:`make_shared_dataset` is the harder case a real memory store is: every
tenant writes about the same pool of topics (meetings, travel, code), so a
mid-size tenant is a thin share of every region of a shared index.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import psycopg
from pgvector.utils import HalfVector
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem.bulk_load import build_search_indexes, drop_search_indexes
from pymem.security import keyring

SIZE_CLASSES = ("tiny", "small", "mid", "large")
# The search path never opens blobs, but row width matters (TOAST, rows per page):
# stand-ins as long as real sealed fields (text ~360 bytes, metadata, float32 embedding).
FAKE_TEXT_CIPHER, FAKE_META_CIPHER = bytes(400), bytes(40)
SUBSPACE_DIM = 16
SUBSPACE_SPREAD = 0.5  # along the subspace (unit-norm center; basis rows have norm ~1)
ISOTROPIC_NOISE = 0.01  # per dimension, in all dimensions  # the search path never opens blobs; any 28 bytes satisfy the schema


@dataclass
class Dataset:
    vectors: np.ndarray  # (n, dim) float32 unit vectors
    tenant_of_row: np.ndarray  # (n,) tenant index per row
    tenant_hashes: list[str]  # user_hash per tenant index
    tenant_clusters: list[np.ndarray]  # cluster ids each tenant draws from
    centers: np.ndarray
    bases: np.ndarray  # per-cluster subspace, (clusters, SUBSPACE_DIM, dim)

    @property
    def n(self) -> int:
        return len(self.vectors)

    @cached_property
    def tenant_sizes(self) -> np.ndarray:
        return np.bincount(self.tenant_of_row, minlength=len(self.tenant_hashes))

    def tenant_size(self, tenant: int) -> int:
        return int(self.tenant_sizes[tenant])

    def tenants_by_band(self, bands: dict[str, tuple[int, int]]) -> dict[str, list[int]]:
        """Tenant indices per band of row counts ``name: (low, high)``, low <= rows < high."""
        return {name: [t for t in range(len(self.tenant_hashes)) if low <= self.tenant_size(t) < high]
                for name, (low, high) in bands.items()}

    def tenants_by_class(self) -> dict[str, list[int]]:
        """Tenant indices per size class (see :meth:`size_class`), in index order."""
        by_class: dict[str, list[int]] = {name: [] for name in SIZE_CLASSES}
        for tenant in range(len(self.tenant_hashes)):
            by_class[self.size_class(tenant)].append(tenant)
        return by_class

    def size_class(self, tenant: int) -> str:
        """tiny < 100 rows, small < 1%, mid 1-10%, large > 10% of all rows."""
        size = self.tenant_size(tenant)
        if size < 100:
            return "tiny"
        share = size / self.n
        return "small" if share < 0.01 else "mid" if share <= 0.10 else "large"


def zipf_sizes(n_rows: int, n_tenants: int, exponent: float = 1.35, minimum: int = 12) -> np.ndarray:
    """Tenant sizes proportional to 1/rank**exponent, summing to n_rows."""
    weights = 1.0 / np.arange(1, n_tenants + 1) ** exponent
    sizes = np.maximum(minimum, np.floor(weights / weights.sum() * n_rows)).astype(int)
    sizes[0] += n_rows - sizes.sum()  # the remainder goes to the largest tenant
    return sizes


def make_dataset(n_rows: int, n_tenants: int, dim: int = 384, n_clusters: int = 64, seed: int = 7) -> Dataset:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = rng.standard_normal((n_clusters, SUBSPACE_DIM, dim)).astype(np.float32) / np.sqrt(dim)
    sizes = zipf_sizes(n_rows, n_tenants)
    vectors, owners, clusters_of = [], [], []
    for tenant, size in enumerate(sizes):
        own = rng.choice(n_clusters, size=min(n_clusters, 2 + tenant % 5), replace=False)
        clusters_of.append(own)
        picks = rng.choice(own, size=size)
        vectors.append(_points_near(rng, centers, bases, picks))
        owners.append(np.full(size, tenant))
    data = np.concatenate(vectors)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    hashes = [tenant_hash(tenant) for tenant in range(n_tenants)]
    return Dataset(data, np.concatenate(owners), hashes, clusters_of, centers, bases)


def tenant_hash(tenant: int) -> str:
    """Tenant number -> its user_hash: the number in hex, except tenant 0, whose 64
    zeros name the audit's own chain (pymem.no_tenant(), which enter_tenant refuses)."""
    return f"{tenant:064x}" if tenant else "f" * 64


def make_shared_dataset(n_rows: int, n_tenants: int, dim: int = 384, n_topics: int = 256,
                        tenant_exponent: float = 0.9, topic_exponent: float = 0.6, seed: int = 11) -> Dataset:
    """Every tenant draws its rows from one shared pool of topics.

    Topic popularity follows a Zipf law (``topic_exponent``), the same for every
    tenant; tenant sizes follow ``tenant_exponent`` (0.9 at 1M rows and 2,000
    tenants: the largest holds about 8% of the rows, the smallest about 90).
    Queries (:func:`queries_for`) follow the tenant's own topic mix.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_topics, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = rng.standard_normal((n_topics, SUBSPACE_DIM, dim), dtype=np.float32) / np.sqrt(dim)
    popularity = 1.0 / np.arange(1, n_topics + 1) ** topic_exponent
    sizes = zipf_sizes(n_rows, n_tenants, exponent=tenant_exponent, minimum=1)
    owners = np.repeat(np.arange(n_tenants), sizes)
    topics = rng.choice(n_topics, size=len(owners), p=popularity / popularity.sum())
    data = _points_near(rng, centers, bases, topics)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    hashes = [tenant_hash(tenant) for tenant in range(n_tenants)]
    # A tenant's "clusters" are its rows' topics: queries_for samples them, so
    # queries land where the tenant writes, in proportion.
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return Dataset(data, owners, hashes, [topics[a:a + size] for a, size in zip(starts, sizes)], centers, bases)


def _points_near(rng, centers, bases, picks) -> np.ndarray:
    coords = rng.standard_normal((len(picks), SUBSPACE_DIM)).astype(np.float32) * SUBSPACE_SPREAD
    points = rng.standard_normal((len(picks), centers.shape[1])).astype(np.float32) * ISOTROPIC_NOISE
    # One matmul per cluster: gathering a (rows, 16, dim) basis per point would
    # take 24 GB at a million rows.
    for cluster in np.unique(picks):
        rows = np.flatnonzero(picks == cluster)
        points[rows] += centers[cluster] + coords[rows] @ bases[cluster]
    return points


def queries_for(dataset: Dataset, tenant: int, count: int, seed: int) -> np.ndarray:
    """Queries near the tenant's own topics."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(dataset.tenant_clusters[tenant], size=count)
    q = _points_near(rng, dataset.centers, dataset.bases, picks)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def exact_top_k(dataset: Dataset, tenant: int, query: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the tenant's k nearest rows by cosine distance (ground truth)."""
    rows = np.flatnonzero(dataset.tenant_of_row == tenant)
    sims = dataset.vectors[rows] @ query
    return rows[np.argsort(-sims, kind="stable")[:k]]


def load(admin_dsn: str, dataset: Dataset, progress: bool = True) -> tuple[list[uuid.UUID], float, str]:
    """Bulk-load the dataset as the superuser, then (re)build the HNSW indexes.

    Benchmark data only: the COPY runs with triggers off (session_replication_role
    = replica), so it leaves no audit rows (one per row otherwise), and the tenants'
    live-row counts, which steer search, are then written in one statement.

    Returns the chunk id of every row, the index build time in seconds and the
    ``maintenance_work_mem`` it ran with (pymem.bulk_load's sizing rule).
    """
    ids = [uuid.uuid4() for _ in range(dataset.n)]
    fake_emb = bytes(4 * dataset.vectors.shape[1] + 28)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        register_vector(conn)
        # vector, or halfvec where the schema stores embeddings at half precision (0023).
        (kind,) = conn.execute("SELECT t.typname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                               " WHERE a.attrelid = 'pymem.memory_chunks'::regclass"
                               " AND a.attname = 'embedding'").fetchone()
        as_sent = HalfVector if kind == "halfvec" else np.asarray
        definitions = drop_search_indexes(conn)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL session_replication_role = replica")
            with cur.copy("COPY pymem.memory_chunks (id, user_hash, doc_id, source, text_cipher, meta_cipher,"
                          " emb_cipher, key_id, embedding, aad_version) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "text", "text", "text", "bytea", "bytea", "bytea", "int4", kind, "int2"])
                for i in tqdm(range(dataset.n), desc="loading rows", unit="row", disable=not progress,
                              mininterval=5):
                    copy.write_row((ids[i], dataset.tenant_hashes[dataset.tenant_of_row[i]], f"doc-{i // 20}",
                                    "bench", FAKE_TEXT_CIPHER, FAKE_META_CIPHER, fake_emb, 1,
                                    as_sent(dataset.vectors[i]), 2))
        conn.execute("INSERT INTO pymem.key_stats (key_id, user_hash, live_rows, seals)"
                     " SELECT key_id, user_hash, count(*), 3 * count(*) FROM pymem.memory_chunks GROUP BY 1, 2")
        start = time.perf_counter()
        build_mwm = build_search_indexes(conn, definitions, progress=progress)
        build_s = time.perf_counter() - start
        conn.execute("VACUUM ANALYZE pymem.memory_chunks")
    return ids, build_s, build_mwm


def tag_rows(admin: str, dataset: Dataset, ids: list[uuid.UUID], metadata_of: Callable[[int], dict],
             tenants: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """Give rows the blind-index tags of ``metadata_of(position within its tenant)``
    (owner DML with triggers off: benchmark data), for ``tenants`` (default every
    one); return the tenant -> row positions mapping the metadata was assigned by."""
    positions = collections.defaultdict(list)
    for i, tenant in enumerate(dataset.tenant_of_row):
        positions[int(tenant)].append(i)
    chosen = positions if tenants is None else {t: positions[t] for t in tenants}
    ring = keyring()
    tags = {}
    for tenant, rows in chosen.items():
        index = ring.tenant_index(dataset.tenant_hashes[tenant])
        for position, row in enumerate(rows):
            blob = index.metadata_tags(metadata_of(position))
            tags[row] = [blob[o:o + 16] for o in range(0, len(blob), 16)]
    with psycopg.connect(admin, autocommit=True) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute("CREATE TEMP TABLE bench_tags (id uuid PRIMARY KEY, tags bytea[]) ON COMMIT DROP")
        with cur.copy("COPY bench_tags (id, tags) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "bytea[]"])
            for row, row_tags in tags.items():
                copy.write_row((ids[row], row_tags))
        cur.execute("UPDATE pymem.memory_chunks c SET meta_tags = t.tags FROM bench_tags t WHERE c.id = t.id")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pymem.memory_chunks")
    return {t: np.asarray(rows) for t, rows in chosen.items()}
