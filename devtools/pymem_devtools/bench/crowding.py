"""The adversarial neighbour (A7 of the second attack round): another tenant in a
victim's search bucket fills the region of the victim's queries with its own rows.

The victims are measured in a database of their own, in the same run: it holds the
rows of every tenant in the victims' buckets (:func:`neighbourhood`: the graphs their
searches walk, as in the full table) and the neighbours, so that the other
classes are measured on the dataset as it is.

For each victim, :func:`crowd` adds a neighbour tenant whose hash lands in the
victim's bucket (the same partial HNSW graph) with ``rows`` rows packed tightly
around the centre of one of the victim's topics (spread :data:`CROWD_SPREAD` along
the topic's subspace, against the dataset's 0.5), and :func:`centre_queries` asks
the victim's questions near that centre: tens of thousands of the neighbour's rows
are then nearer each query than the victim's own tenth-nearest row. The attack as
found (40,000 rows) cut a victim's recall@10 to 0.1 at 100 ms.
"""

from __future__ import annotations

import numpy as np

from pymem.migrations import SQL_DIR
from pymem_devtools.bench.dataset import ISOTROPIC_NOISE, SUBSPACE_DIM, Dataset

# Rows of each neighbour, per scale (the attack as found: 40,000).
CROWD_ROWS = {"tiny": 1_000, "quick": 10_000, "full": 40_000, "xl": 40_000}
CROWD_SPREAD = 0.15  # the neighbour's rows around the topic's centre
QUERY_SPREAD = 0.1  # the victim's queries around it
# Victims: the largest tenant of each band whose searches can take the bucket graph
# (smaller tenants are searched exactly); at tiny and quick scale, the largest tenant.
VICTIM_BANDS = {"3k-10k": (3_000, 10_000), "10k-40k": (10_000, 40_000), "40k+": (40_000, 10**9)}


def search_bucket(user_hash: str) -> int:
    """pymem.search_bucket: the low 6 bits of the hash's last byte."""
    return int(user_hash[-2:], 16) & 63


def victims(dataset: Dataset, scale: str) -> dict[str, int]:
    """Band name -> the victim tenant (see :data:`VICTIM_BANDS`)."""
    if scale in ("tiny", "quick"):
        return {"largest tenant": int(np.argmax(dataset.tenant_sizes))}
    return {band: tenants[int(np.argmax([dataset.tenant_size(t) for t in tenants]))]
            for band, tenants in dataset.tenants_by_band(VICTIM_BANDS).items() if tenants}


def neighbourhood(dataset: Dataset, victim_tenants: list[int]) -> Dataset:
    """The rows of every tenant whose search bucket is a victim's (tenant numbers kept)."""
    buckets = {search_bucket(dataset.tenant_hashes[v]) for v in victim_tenants}
    keep = np.isin(dataset.tenant_of_row,
                   [t for t, h in enumerate(dataset.tenant_hashes) if search_bucket(h) in buckets])
    return Dataset(dataset.vectors[keep], dataset.tenant_of_row[keep], dataset.tenant_hashes,
                   dataset.tenant_clusters, dataset.centers, dataset.bases)


def crowd(dataset: Dataset, victim_tenants: list[int], rows: int, seed: int = 71) -> tuple[Dataset, dict[int, int]]:
    """The dataset with one crowding neighbour per victim; also victim -> the topic crowded
    (the victim's most frequent one)."""
    rng = np.random.default_rng(seed)
    vectors, owners = [dataset.vectors], [dataset.tenant_of_row]
    hashes, clusters = list(dataset.tenant_hashes), list(dataset.tenant_clusters)
    topics = {}
    for victim in victim_tenants:
        topic = int(np.bincount(dataset.tenant_clusters[victim]).argmax())
        topics[victim] = topic
        coords = rng.standard_normal((rows, SUBSPACE_DIM)).astype(np.float32) * CROWD_SPREAD
        points = dataset.centers[topic] + coords @ dataset.bases[topic]
        points += rng.standard_normal(points.shape).astype(np.float32) * ISOTROPIC_NOISE
        vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        owners.append(np.full(rows, len(hashes)))
        # Any hash whose last byte has the victim's low 6 bits shares its graph.
        hashes.append(f"{0xc0ffee:06x}{victim:056x}{0x40 | search_bucket(dataset.tenant_hashes[victim]):02x}")
        clusters.append(np.array([topic]))
    return (Dataset(np.concatenate(vectors), np.concatenate(owners), hashes, clusters, dataset.centers,
                    dataset.bases), topics)


def centre_queries(dataset: Dataset, topic: int, count: int, seed: int) -> np.ndarray:
    """Queries near a topic's centre (spread :data:`QUERY_SPREAD`)."""
    rng = np.random.default_rng(seed)
    coords = rng.standard_normal((count, SUBSPACE_DIM)).astype(np.float32) * QUERY_SPREAD
    queries = dataset.centers[topic] + coords @ dataset.bases[topic]
    queries += rng.standard_normal(queries.shape).astype(np.float32) * ISOTROPIC_NOISE
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


#: The revision before the neighbour-proof search (0016), measured on the same data.
BEFORE = "0015"


# The internal functions an older search_rows_v2 calls, which revision 0022 replaced.
_SEARCH_PARTS = ("tags_match", "filtered_nearest", "solo_graph_walk")


def released_search(revision: str) -> str:
    """``pymem.search_rows_v2`` as revision ``revision`` released it, with the internal
    functions it calls as that revision had them (their CREATE statements)."""
    bundle = (SQL_DIR / "released" / f"{revision}.sql").read_text()

    def created(name: str) -> str:
        start = bundle.find(f"CREATE OR REPLACE FUNCTION pymem.{name}(")
        return "" if start < 0 else bundle[start:bundle.index(f"COMMENT ON FUNCTION pymem.{name}(", start)]

    return "".join(created(name) for name in (*_SEARCH_PARTS, "search_rows_v2"))
