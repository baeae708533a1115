"""The benchmark suite runs end to end at its tiny scale and writes JSON + markdown.

Shape only: no assertion here looks at a timing (these machines are shared).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymem_devtools.bench.bench_rerank import THREAD_SETTINGS
from pymem_devtools.bench.dataset import make_shared_dataset
from pymem_devtools.bench.rerank_backends import BACKENDS as RERANK_BACKENDS
from pymem_devtools.bench.rerank_floor import macs, work_vs_full_graph
from pymem_devtools.bench.run import BENCHES, run_suite


def test_tiny_suite_writes_json_and_markdown(tmp_path):
    report = run_suite("tiny", tmp_path)
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert set(written["benches"]) == set(BENCHES) == set(report["benches"])
    markdown = (tmp_path / "tiny.md").read_text()
    for name in BENCHES:
        assert f"## {name}" in markdown

    crypto = written["benches"]["crypto"]["results"]
    assert {"raw AESGCM seal", "pymem seal", "seal_ratio_vs_raw", "open_ratio_vs_raw"} <= set(crypto)
    keys = report["benches"]["keys"]["results"]
    assert {"seal_ratio", "open_ratio"} <= set(keys["crypto"])
    assert {"ingest_ratio_p50", "search_ratio_p50"} <= set(keys["paths"])
    # Every provider ran here (SoftHSM2 and moto are installed by make test), each rotation whole.
    assert set(keys["providers"]) == {"local", "pkcs11 (SoftHSM2)", "aws-kms (moto)"}
    assert all(p["rotation_tenants"] > 0 and set(p["first_access_ms"]) == {"p50", "p95", "p99", "max"}
               for p in keys["providers"].values())

    ingest = written["benches"]["ingest"]["results"]
    assert {"batch_speedup_per_chunk", "single_chunks_per_s"} <= set(ingest["single_vs_batch"])
    assert "sealed_ratio_vs_copy" in ingest["copy_vs_sealed"]
    assert "audit_overhead_ratio" in ingest["audit_chain_cost"]
    assert "batch_speedup_per_chunk" in ingest["single_vs_batch_no_hnsw"]
    large = ingest["large_batch"]
    assert {"batch_vs_single", "load_then_build_vs_single", "largest_ratio_with_index"} <= set(large)
    assert large["hnsw_insertion_ms_per_chunk"] > 0
    half = ingest["halfvec_vs_vector"]
    for kind in ("vector", "halfvec"):
        assert 0.0 <= half[kind]["recall_at_10"] <= 1.0 and half[kind]["index_mb"] > 0

    halfvec = written["benches"]["halfvec"]["results"]
    assert set(halfvec["systems"]) == {"vector", "halfvec", "halfvec 3072-d"}
    assert all(0.0 <= s["recall_at_10"] <= 1.0 and s["graphs_bytes"] > 0 for s in halfvec["systems"].values())
    assert halfvec["ratios"]["graphs_halfvec_over_vector"] > 0

    search = written["benches"]["search"]["results"]["classes"]
    assert search, "at least one size class was measured"
    for info in search.values():
        assert set(info["methods"]) == {"pymem search_chunks", "pymem search_chunks, read only",
                                         "plain HNSW + filter", "exact (btree + sort)"}
        for stats in info["methods"].values():
            assert 0.0 <= stats["recall_at_10"] <= 1.0 and set(stats["latency_ms"]) == {"p50", "p95", "p99", "max"}

    crowded = written["benches"]["search"]["results"]["crowded"]
    for info in crowded.values():
        assert {"pymem search_chunks", "pymem search_chunks, no solo graph",
                "pymem search_chunks, revision 0015's search"} <= set(info["methods"])

    builds = written["benches"]["builds"]["results"]
    assert len(builds["builds"]) == 2
    for build in builds["builds"]:
        assert {"min_rows", "built", "build_s"} <= set(build["solo_graphs"])
        for bands in build["methods"].values():
            assert all(0.0 <= b["recall_min"] <= b["recall_at_10"] <= 1.0 for b in bands.values())
    assert set(builds["worst"]) == {"pymem search_chunks (solo graphs)", "pymem search_chunks, no solo graph"}

    citus = written["benches"]["citus"]["results"]
    assert set(citus["targets"]) == {"PostgreSQL (one node)", "Citus (3 nodes, 32 shards)"}
    assert set(citus["recall_difference"]) == set(citus["targets"]["PostgreSQL (one node)"]["classes"])

    rerank = written["benches"]["rerank"]["results"]
    assert set(rerank["shapes"]) == {"tinybert-l2", "minilm-l6"}
    for shape in rerank["shapes"].values():
        cell = shape["lengths"]["64"]
        assert set(cell["backends"]) == set(RERANK_BACKENDS)
        assert {"int8_p95_vs_torch", "int8_p95_vs_best_peer", "int8_p50_vs_floor"} <= set(cell["ratios"])
        assert cell["best_peer"] in {"torch", "st_onnx_qint8", "flashrank"}
        assert cell["floor"]["path_ms"]["int8"] > cell["floor"]["inference_ms"]["int8"] > 0
        profile = cell["int8_op_profile"]
        assert profile["matmul_ms"] > 0 and profile["other_ms"] > 0
        assert {"MatMul", "DynamicQuantizeMatMul"}.isdisjoint(profile["other_by_op_ms"])
        assert "Softmax" in profile["other_by_op_ms"]
        assert cell["ratios"]["floor_plus_other_ops_vs_floor"] > 1
        assert 0 < cell["work_vs_full_graph"] < 1
        assert cell["ratios"]["openvino_bf16_p50_vs_floor"] > 0
        assert 0 <= cell["bf16_fp32_top1_agreement"] <= 1
    assert len(rerank["shared_cores"]["cases"]) == 2 * len(THREAD_SETTINGS)
    assert rerank["budget"]["metrics"]["rerank_skipped_total"] <= rerank["budget"]["calls"]

    e2e = written["benches"]["e2e"]["results"]
    assert {"ANN + open only", "with rerank"} <= set(e2e) and e2e["rerank_skipped_total"] == 0

    assert {"insert_chunks_per_s", "upsert_new_vs_insert", "upsert_replace_vs_insert"} <= set(ingest["upsert_vs_insert"])

    filtered = written["benches"]["filtered"]["results"]["cells"]
    assert {c["selectivity"] for c in filtered} == {"1%", "10%", "50%"}
    for cell in filtered:
        for method in ("pymem search_chunks_v2", "pymem search_chunks_v2, revision 0017's search",
                       "plain HNSW + filter"):
            assert 0.0 <= cell[method]["recall_at_10"] <= 1.0
    assert written["benches"]["filtered"]["results"]["solo_graphs"]["min_rows"] > 0

    load = written["benches"]["load"]["results"]
    assert {"plain pgvector table: search", "langchain-postgres PGVectorStore: search",
            "pymem query_memory, rerank off", "pymem query_memory, rerank on"} <= set(load["cells"])
    for cells in load["cells"].values():
        assert [c["clients"] for c in cells] == [1, 4, 16] and all(c["ops"] > 0 for c in cells)
    assert all(c["wal_flushes_per_op"] >= 0 and c["audit_bytes_per_op"] > 0
               for c in load["cells"]["pymem query_memory, rerank off"])
    assert set(load["goals"]) == {"qps_ratio_16_clients", "p50_ratio_1_client"}
    assert list(load["floor_p50_ms"])[-1].startswith("+ opening and checking")

    soak = written["benches"]["soak"]["results"]
    assert soak["operations"] > 0 and soak["errors"] == {}
    assert soak["lost"] == {"missing": 0, "differing": 0, "extra": 0} and soak["table"]["audit_problems"] == 0
    assert set(soak["drift_last_over_first"]) == {"all", "searches"} and len(soak["growth"]) == 2

    langchain = written["benches"]["langchain"]["results"]
    stores = {"langchain-postgres PGVectorStore", "pymem PymemVectorStore"}
    assert set(langchain["ingest_rows_per_s"]) == stores and langchain["ingest_ratio_pymem_over_peer"] > 0
    assert langchain["classes"] and all(set(info["stores"]) == stores for info in langchain["classes"].values())


def test_the_xl_scale_runs_search_and_builds_only(tmp_path):
    with pytest.raises(ValueError, match="runs only: search, builds"):
        run_suite("xl", tmp_path, only=["ingest"])
    assert not (tmp_path / "xl.json").exists()


def test_shared_topic_tenants_all_draw_from_one_pool():
    dataset = make_shared_dataset(20_000, 40, n_topics=32)
    assert dataset.n == 20_000 and dataset.tenant_sizes.sum() == 20_000
    # Every tenant of 500+ rows writes about (nearly) every topic: no tenant owns a region.
    for tenant in np.flatnonzero(dataset.tenant_sizes >= 500):
        assert len(np.unique(dataset.tenant_clusters[tenant])) >= 30
    bands = dataset.tenants_by_band({"small": (0, 500), "big": (500, 10**9)})
    assert sorted(bands["small"] + bands["big"]) == list(range(40))


def test_rerank_floor_counts_the_cls_only_last_layer():
    # 2 layers, hidden 4, intermediate 8; 3 pairs of 5 tokens. Full layer per token:
    # 4*16 + 2*4*8 = 128 MACs; the last layer does keys/values for every token (2*16)
    # and the rest for the [CLS] row only; the pooler is 16 per pair.
    config = {"num_hidden_layers": 2, "hidden_size": 4, "intermediate_size": 8}
    work = macs(config, pairs=3, tokens=5)
    assert work["weight"] == 1 * 3 * 5 * 128 + 3 * 16 + 3 * 5 * 32 + 3 * 128
    assert work["attention"] == 1 * 3 * 2 * 25 * 4 + 3 * 2 * 5 * 4
    whole = macs(config, pairs=3, tokens=5, cls_only=False)
    assert whole["weight"] == 2 * 3 * 5 * 128 + 3 * 16 and whole["weight"] > work["weight"]
    assert work_vs_full_graph(config, pairs=3, tokens=5) == round(
        (work["weight"] + work["attention"]) / (whole["weight"] + whole["attention"]), 3)
