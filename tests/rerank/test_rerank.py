"""Tests of the ONNX cross-encoder reranker (TASK C of the seed).

A session fixture builds a random-weight cross-encoder with TinyBERT-L2's architecture
(:mod:`pymem_devtools.tiny_reranker`) and exports it with the real export code. Everything that
can run on the real ONNX Runtime does; only the breaker tests inject slow or failing
scorers. No test asserts a wall-clock threshold; budgets are either generous or met by
scorers that wait for their termination.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pymem_devtools.tiny_reranker import TINYBERT_L2_CONFIG, build_tiny_cross_encoder

from pymem import rerank as rr
from pymem.config import get_settings
from pymem.metrics_app import metrics_app, start_metrics_server
from pymem.onnx_export import (
    MANIFEST_NAME,
    ExportError,
    export_reranker,
    renamed_hub_id,
    sha256_file,
)
from pymem.rerank import (
    CircuitBreaker,
    CrossEncoder,
    DeviceUnavailableError,
    ModelUnavailableError,
    RerankCancelled,
    RerankedResult,
    Reranker,
    Scores,
    ann_order,
    length_buckets,
    plan_batches,
)
from pymem.rerank.metrics import RerankMetrics

QUERY = "what is the capital of france"
CANDIDATES = [
    "paris is the capital of france",
    "the cat sat on the mat",
    "rain " * 90,
    "row level security policy in postgres",
    "x",
    "fast vector search in postgres with an index " * 20,  # truncated at 256 tokens
    "python and rust code",
    "mountain river city weather snow sun " * 5,
]

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight TinyBERT-L2-shaped cross-encoder checkpoint with its tokenizer."""
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def exported(checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """The checkpoint exported by the real export code, with int8 and fp16 variants."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-reranker"
    manifest = export_reranker(str(checkpoint), out, int8=True, fp16=True, progress=False)
    return out, manifest


@pytest.fixture(scope="session")
def model_dir(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="session")
def fp32_encoder(model_dir) -> CrossEncoder:
    return CrossEncoder(model_dir, device="cpu", variant="fp32")


@pytest.fixture(scope="session")
def int8_encoder(model_dir) -> CrossEncoder:
    return CrossEncoder(model_dir, device="cpu")


@pytest.fixture(scope="session")
def torch_reference(checkpoint):
    """PyTorch logits of the same weights, tokenized by transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()

    def logits(query: str, candidates: list[str]) -> np.ndarray:
        enc = tokenizer([query] * len(candidates), candidates, padding=True, truncation=True,
                        max_length=256, return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits[:, 0].numpy()

    return logits


def make_settings(model_dir: Path, **overrides):
    base = dict(rerank_model_dir=Path(model_dir), rerank_device="cpu", rerank_enabled=True,
                rerank_breaker_threshold=3, rerank_breaker_cooldown_s=30.0)
    return dataclasses.replace(get_settings(), **{**base, **overrides})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowScorer:
    """Never finishes on its own: waits until its run is terminated (like ORT would)."""

    device = "fake"

    def __init__(self) -> None:
        self.calls = 0
        self.terminated = 0
        self.exited = threading.Event()

    def score(self, query, candidates, run_options) -> Scores:
        self.calls += 1
        self.exited.clear()
        try:
            while not run_options.terminate:
                threading.Event().wait(0.001)
            self.terminated += 1
            raise RerankCancelled("terminated")
        finally:
            self.exited.set()


class InstantScorer:
    """Returns fixed logits immediately (reverse ANN order) and records its thread."""

    device = "fake"

    def __init__(self, logits=None) -> None:
        self.calls = 0
        self.thread = None
        self.logits = logits

    def score(self, query, candidates, run_options) -> Scores:
        self.calls += 1
        self.thread = threading.current_thread().name
        logits = self.logits if self.logits is not None else np.arange(len(candidates), dtype=np.float32)
        return Scores(np.asarray(logits, dtype=np.float32), 0.001, 0.002)


class SwitchScorer:
    """Delegates to a slow or an instant scorer, switchable between calls."""

    device = "fake"

    def __init__(self) -> None:
        self.slow, self.fast = SlowScorer(), InstantScorer()
        self.current = self.slow

    def score(self, query, candidates, run_options) -> Scores:
        return self.current.score(query, candidates, run_options)


class FailingScorer:
    device = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query, candidates, run_options) -> Scores:
        self.calls += 1
        raise RuntimeError("boom")


@pytest.fixture
def rerankers():
    """Build Rerankers with injected scorers; closes them afterwards."""
    made = []

    def build(scorer=None, settings=None, clock=None, factory=None) -> Reranker:
        settings = settings or make_settings(Path("/nonexistent"))
        factory = factory or (lambda s: scorer)
        r = Reranker(settings, scorer_factory=factory, **({"clock": clock} if clock else {}))
        made.append(r)
        return r

    yield build
    for r in made:
        r.close()


@pytest.fixture
def default_reranker_env(monkeypatch, model_dir):
    """Point the process-wide reranker at the exported model; reset it around the test."""
    monkeypatch.setenv("PYMEM_RERANK_MODEL", str(model_dir))
    monkeypatch.setenv("PYMEM_RERANK_DEVICE", "cpu")
    monkeypatch.delenv("RERANK_ENABLED", raising=False)
    rr.reset_reranker()
    yield
    rr.reset_reranker()


def assert_ann_order(results, candidates):
    n = len(candidates)
    assert [r.index for r in results] == list(range(n))
    assert [r.rank for r in results] == list(range(1, n + 1))
    assert [r.text for r in results] == list(candidates)
    assert [r.score for r in results] == pytest.approx([1 - i / n for i in range(n)])


# ------------------------------------------------------------------------------- tests


class TestCrossEncoderInit:
    def test_manifest_lists_variants_with_matching_sha256(self, exported):
        model_dir, manifest = exported
        assert set(manifest["variants"]) == {"fp32", "int8", "fp16"}
        for variant in manifest["variants"].values():
            assert sha256_file(model_dir / variant["file"]) == variant["sha256"]
        assert json.loads((model_dir / MANIFEST_NAME).read_text()) == manifest

    def test_manifest_records_source_architecture_opset_and_time(self, exported, checkpoint):
        _, manifest = exported
        assert manifest["source"] == str(checkpoint)
        assert manifest["task"] == "text-classification"
        arch = manifest["architecture"]
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "vocab_size", "num_labels"):
            assert arch[key] == TINYBERT_L2_CONFIG[key]
        assert isinstance(manifest["opset"], int) and manifest["opset"] >= 14
        assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None

    def test_manifest_records_measured_parity(self, exported):
        _, manifest = exported
        fp32 = manifest["variants"]["fp32"]["parity"]
        assert fp32["measured"] and fp32["max_abs_diff"] < 1e-4 and fp32["same_rank_order"]
        assert manifest["variants"]["int8"]["providers"] == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider" in manifest["variants"]["fp16"]["providers"]

    def test_export_keeps_tokenizer_for_the_runtime(self, model_dir):
        assert (model_dir / "tokenizer.json").is_file()
        assert (model_dir / "config.json").is_file()

    def test_export_rejects_missing_source(self, tmp_path):
        with pytest.raises(ExportError, match="neither an existing directory nor a hub id"):
            export_reranker("not a model!", tmp_path / "out", progress=False)

    def test_export_rejects_directory_without_config(self, tmp_path):
        (tmp_path / "empty").mkdir()
        with pytest.raises(ExportError, match="no config.json"):
            export_reranker(str(tmp_path / "empty"), tmp_path / "out", progress=False)

    def test_export_refuses_to_overwrite_silently(self, checkpoint, model_dir):
        with pytest.raises(ExportError, match="not empty"):
            export_reranker(str(checkpoint), model_dir, progress=False)

    def test_renamed_hub_ids_get_a_hint(self):
        assert renamed_hub_id("cross-encoder/ms-marco-TinyBERT-L-2-v2") == "cross-encoder/ms-marco-TinyBERT-L2-v2"
        assert renamed_hub_id("cross-encoder/ms-marco-MiniLM-L-6-v2") == "cross-encoder/ms-marco-MiniLM-L6-v2"
        assert renamed_hub_id("cross-encoder/ms-marco-TinyBERT-L2-v2") is None

    def test_cpu_device_prefers_int8_and_reports_cpu(self, int8_encoder):
        assert int8_encoder.device == "cpu"
        assert int8_encoder.variant == "int8"
        assert int8_encoder._session.get_providers() == ["CPUExecutionProvider"]

    def test_cpu_threads_do_not_spin(self, int8_encoder):
        # Spinning intra-op threads would hold a core Postgres needs.
        options = int8_encoder._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"

    def test_session_config_overrides_the_cpu_defaults(self, model_dir):
        encoder = CrossEncoder(model_dir, device="cpu", batch_size=2,
                               session_config={"session.intra_op.allow_spinning": "1"})
        options = encoder._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"

    def test_fast_batch_tokenization_gives_the_same_ids(self, int8_encoder):
        # score() uses encode_batch_fast (no offsets); the ids must be encode_batch's.
        from pymem.onnx_export import parity_pairs

        pairs = parity_pairs()
        slow = int8_encoder._tokenizer.encode_batch(pairs)
        fast = int8_encoder._tokenizer.encode_batch_fast(pairs)
        assert [e.ids for e in fast] == [e.ids for e in slow]
        assert [e.type_ids for e in fast] == [e.type_ids for e in slow]

    def test_split_tokenization_keeps_every_pair_in_order(self, int8_encoder):
        # Enough pairs that score() tokenizes them in two halves on two threads.
        pairs = [(QUERY, f"{CANDIDATES[i % len(CANDIDATES)]} {'cat ' * i}")
                 for i in range(2 * rr.session.TOKENIZE_SPLIT_MIN_PAIRS + 3)]
        split = int8_encoder._encode_pairs(pairs)
        whole = int8_encoder._tokenizer.encode_batch(pairs)
        assert [e.ids for e in split] == [e.ids for e in whole]
        assert [e.type_ids for e in split] == [e.type_ids for e in whole]

    def test_close_stops_the_tokenizer_helper(self, model_dir):
        encoder = CrossEncoder(model_dir, device="cpu", batch_size=2)
        encoder.close()
        with pytest.raises(RuntimeError):
            encoder._tokenize_helper.submit(len, ())

    def test_auto_without_cuda_falls_back_to_cpu_with_one_warning(self, model_dir, caplog, monkeypatch):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("this machine has CUDA")
        monkeypatch.setattr(rr.session, "_fallback_warned", False)
        with caplog.at_level(logging.WARNING, logger="pymem.rerank"):
            first = CrossEncoder(model_dir, device="auto", batch_size=2)
            CrossEncoder(model_dir, device="auto", batch_size=2)
        assert first.device == "cpu"
        assert sum("running on CPU" in r.getMessage() for r in caplog.records) == 1

    def test_explicit_cuda_without_cuda_is_a_clear_error(self, model_dir):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("this machine has CUDA")
        with pytest.raises(DeviceUnavailableError, match="PYMEM_RERANK_DEVICE=cuda.*no CUDA"):
            CrossEncoder(model_dir, device="cuda")

    def test_missing_model_dir_is_model_unavailable(self, tmp_path):
        with pytest.raises(ModelUnavailableError, match="pymem export-reranker"):
            CrossEncoder(tmp_path / "nope", device="cpu")

    def test_tampered_model_is_refused(self, model_dir, tmp_path):
        copy = shutil.copytree(model_dir, tmp_path / "copy")
        with open(copy / "model_int8.onnx", "ab") as fh:
            fh.write(b"\0")
        with pytest.raises(ModelUnavailableError, match="sha256"):
            CrossEncoder(copy, device="cpu")

    def test_max_length_is_capped_by_position_embeddings(self, model_dir):
        encoder = CrossEncoder(model_dir, device="cpu", max_length=4096, batch_size=1)
        assert encoder.max_length == 512
        assert encoder.buckets[-1] == 512

    def test_load_time_is_measured(self, int8_encoder):
        assert 0 < int8_encoder.load_seconds
        assert int8_encoder.buckets == (32, 64, 128, 256)

    def test_get_cross_encoder_is_lazy_and_thread_safe(self, rerankers, model_dir):
        built = []
        barrier = threading.Barrier(6)

        def factory(settings):
            built.append(1)
            return CrossEncoder(settings.rerank_model_dir, device="cpu", batch_size=2)

        r = rerankers(settings=make_settings(model_dir), factory=factory)
        assert not r.loaded and built == []
        seen = []

        def worker():
            barrier.wait()
            seen.append(r.cross_encoder())

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(built) == 1
        assert len(seen) == 6 and all(s is seen[0] for s in seen)

    def test_get_cross_encoder_module_function(self, default_reranker_env):
        encoder = rr.get_cross_encoder()
        assert encoder is rr.get_cross_encoder()
        assert encoder.device == "cpu"

    def test_the_runtime_does_not_import_the_export_module(self):
        code = ("import sys, pymem.rerank, pymem.repository;"
                "print('pymem.onnx_export' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"

    def test_importing_rerank_does_not_import_torch_or_transformers(self):
        code = ("import sys, pymem.rerank, pymem.onnx_export, pymem_devtools.tiny_reranker;"
                "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'optimum') if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"


class TestReranking:
    def test_onnx_fp32_matches_pytorch_same_weights(self, fp32_encoder, torch_reference):
        ours = fp32_encoder.score(QUERY, CANDIDATES, ort.RunOptions()).logits
        ref = torch_reference(QUERY, CANDIDATES)
        assert np.abs(ours - ref).max() < 1e-4
        assert list(np.argsort(-ours)) == list(np.argsort(-ref))

    def test_int8_rank_agreement_with_fp32_is_reported(self, fp32_encoder, int8_encoder, record_property):
        queries = [QUERY, "postgres security", "weather in the mountain city", "code"]
        top1, correlations = [], []
        for q in queries:
            a = fp32_encoder.score(q, CANDIDATES, ort.RunOptions()).logits
            b = int8_encoder.score(q, CANDIDATES, ort.RunOptions()).logits
            top1.append(a.argmax() == b.argmax())
            correlations.append(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])
        record_property("int8_top1_agreement", float(np.mean(top1)))
        record_property("int8_spearman_mean", float(np.mean(correlations)))
        print(f"int8 vs fp32: top-1 agreement {np.mean(top1):.2f}, mean Spearman {np.mean(correlations):.2f}")
        assert np.isfinite(correlations).all()
        assert np.mean(correlations) > 0  # quantized scores still track the fp32 ones

    def test_fp16_variant_parity_is_recorded(self, exported):
        parity = exported[1]["variants"]["fp16"]["parity"]
        assert parity["measured"] is False or parity["max_abs_diff"] < 0.1

    def test_order_is_restored_after_length_sort(self, fp32_encoder):
        forward = fp32_encoder.score(QUERY, CANDIDATES, ort.RunOptions()).logits
        backward = fp32_encoder.score(QUERY, CANDIDATES[::-1], ort.RunOptions()).logits
        np.testing.assert_allclose(backward[::-1], forward, atol=1e-5)

    def test_padding_and_batching_do_not_change_scores(self, model_dir, fp32_encoder):
        one_by_one = CrossEncoder(model_dir, device="cpu", variant="fp32", batch_size=1)
        np.testing.assert_allclose(one_by_one.score(QUERY, CANDIDATES, ort.RunOptions()).logits,
                                   fp32_encoder.score(QUERY, CANDIDATES, ort.RunOptions()).logits,
                                   atol=1e-5)

    def test_long_candidates_are_truncated_to_max_length(self, fp32_encoder):
        long = "postgres " * 300
        a, b = fp32_encoder.score(QUERY, [long, long + "cat dog " * 50], ort.RunOptions()).logits
        assert a == pytest.approx(b, abs=1e-6)

    def test_more_candidates_than_batch_size(self, fp32_encoder):
        many = [f"{c} {i}" for i, c in enumerate(CANDIDATES * 9)]  # 72 > 32
        batched = fp32_encoder.score(QUERY, many, ort.RunOptions()).logits
        assert batched.shape == (72,)
        np.testing.assert_allclose(batched[:8], fp32_encoder.score(QUERY, many[:8], ort.RunOptions()).logits,
                                   atol=1e-5)

    def test_plan_batches_respects_size_and_buckets(self):
        lengths = [10, 300, 40, 33, 31, 250, 64, 65]
        plan = plan_batches(lengths, batch_size=2, buckets=(32, 64, 128, 256, 512))
        assert sorted(i for idx, _ in plan for i in idx) == list(range(len(lengths)))
        for idx, bucket in plan:
            assert len(idx) <= 2
            assert all(lengths[i] <= bucket for i in idx)
        assert [b for _, b in plan] == sorted(b for _, b in plan)

    def test_length_buckets(self):
        assert length_buckets(256) == (32, 64, 128, 256)
        assert length_buckets(100) == (32, 64, 100)
        assert length_buckets(16) == (16,)

    async def test_rerank_returns_results_sorted_by_rank(self, rerankers, model_dir):
        r = rerankers(settings=make_settings(model_dir), factory=rr.service._cross_encoder_from_settings)
        results = await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        assert all(isinstance(x, RerankedResult) for x in results)
        assert [x.rank for x in results] == list(range(1, len(CANDIDATES) + 1))
        assert sorted(x.index for x in results) == list(range(len(CANDIDATES)))
        assert all(x.text == CANDIDATES[x.index] for x in results)
        assert [x.score for x in results] == sorted((x.score for x in results), reverse=True)
        assert r.metrics_json()["rerank_skipped_total"] == 0

    async def test_rerank_scores_are_sigmoid_of_logits(self, rerankers, model_dir, int8_encoder):
        r = rerankers(settings=make_settings(model_dir), factory=rr.service._cross_encoder_from_settings)
        results = await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        logits = int8_encoder.score(QUERY, CANDIDATES, ort.RunOptions()).logits
        for x in results:
            assert x.score == pytest.approx(1 / (1 + np.exp(-logits[x.index])), abs=1e-5)

    async def test_one_tenants_timeouts_do_not_turn_reranking_off_for_other_tenants(self, rerankers, model_dir):
        """The attack: three candidates=1000 queries from one tenant opened the
        process-wide breaker, and the next tenant was no longer reranked."""
        r = rerankers(settings=make_settings(model_dir, rerank_circuit_ms=60_000.0),
                      factory=rr.service._cross_encoder_from_settings)
        heavy = [CANDIDATES[i % len(CANDIDATES)] + f" {i}" for i in range(1000)]
        for _ in range(3):  # a budget no run can meet: every call times out
            assert_ann_order(await r.rerank(QUERY, heavy, timeout_ms=0.001, tenant="a" * 64), heavy)
        assert r.breaker_for("a" * 64).state == "open"
        skipped = r.metrics_json()["rerank_skipped_total"]
        results = await r.rerank(QUERY, CANDIDATES, tenant="b" * 64)
        assert r.metrics_json()["rerank_skipped_total"] == skipped  # tenant b was reranked, not skipped
        assert r.breaker_for("b" * 64).state == "closed" and r.breaker.state == "closed"
        assert sorted(x.index for x in results) == list(range(len(CANDIDATES)))

    async def test_rerank_of_nothing_is_nothing(self, rerankers):
        scorer = InstantScorer()
        assert await rerankers(scorer).rerank(QUERY, []) == []
        assert scorer.calls == 0

    async def test_inference_runs_off_the_event_loop(self, rerankers):
        scorer = InstantScorer()
        await rerankers(scorer).rerank(QUERY, CANDIDATES)
        assert scorer.thread.startswith("pymem-rerank")
        assert scorer.thread != threading.current_thread().name

    def test_terminated_run_stops_onnx_runtime(self, fp32_encoder):
        options = ort.RunOptions()
        options.terminate = True
        with pytest.raises(RerankCancelled):
            fp32_encoder.score(QUERY, CANDIDATES, options)

    def test_fallback_scores_follow_the_seed(self):
        assert_ann_order(ann_order(["a", "b", "c", "d"]), ["a", "b", "c", "d"])

    def test_reranked_result_is_frozen(self):
        result = RerankedResult(0, "a", 1.0, 1, reranked=True)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.rank = 2


class TestCircuitBreaker:
    async def test_timeout_returns_ann_order_and_counts_a_skip(self, rerankers):
        r = rerankers(SlowScorer())
        results = await r.rerank(QUERY, CANDIDATES, timeout_ms=20)
        assert_ann_order(results, CANDIDATES)
        metrics = r.metrics_json()
        assert metrics["rerank_skipped_by_reason"]["timeout"] == 1
        assert metrics["rerank_skipped_total"] == 1
        assert metrics["rerank_latency_ms"]["count"] == 1

    async def test_timeout_terminates_the_work(self, rerankers):
        slow = SlowScorer()
        await rerankers(slow).rerank(QUERY, CANDIDATES, timeout_ms=20)
        assert await asyncio.to_thread(slow.exited.wait, 30)
        assert slow.terminated == 1

    async def test_opens_after_threshold_breaches_then_skips_the_model(self, rerankers):
        slow = SlowScorer()
        r = rerankers(slow)  # threshold 3
        for _ in range(3):
            await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        assert r.breaker.state == "open"
        calls = slow.calls
        results = await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        assert_ann_order(results, CANDIDATES)
        assert slow.calls == calls  # the cross-encoder was not touched
        assert r.metrics_json()["rerank_skipped_by_reason"]["circuit_open"] == 1

    async def test_recovers_through_half_open(self, rerankers):
        clock = FakeClock()
        scorer = SwitchScorer()
        r = rerankers(scorer, clock=clock)
        for _ in range(3):
            await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        assert r.breaker.state == "open"
        scorer.current = scorer.fast
        clock.now += 29.0
        assert_ann_order(await r.rerank(QUERY, CANDIDATES), CANDIDATES)  # still cooling down
        clock.now += 2.0
        results = await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        assert [x.index for x in results] == list(range(len(CANDIDATES)))[::-1]
        assert r.breaker.state == "closed"

    async def test_failed_trial_reopens(self, rerankers):
        clock = FakeClock()
        r = rerankers(SlowScorer(), clock=clock)
        for _ in range(3):
            await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        clock.now += 31.0
        await r.rerank(QUERY, CANDIDATES, timeout_ms=10)  # the trial breaches too
        snap = r.breaker.snapshot()
        assert snap["state"] == "open" and snap["opened_total"] == 2

    async def test_errors_count_as_failures(self, rerankers):
        failing = FailingScorer()
        r = rerankers(failing)
        for _ in range(3):
            assert_ann_order(await r.rerank(QUERY, CANDIDATES), CANDIDATES)
        assert r.metrics_json()["rerank_skipped_by_reason"]["error"] == 3
        assert r.breaker.state == "open"

    async def test_non_finite_scores_are_an_error(self, rerankers):
        r = rerankers(InstantScorer(logits=[np.nan] * len(CANDIDATES)))
        assert_ann_order(await r.rerank(QUERY, CANDIDATES), CANDIDATES)
        assert r.metrics_json()["rerank_skipped_by_reason"]["error"] == 1

    async def test_success_resets_consecutive_failures(self, rerankers):
        scorer = SwitchScorer()
        r = rerankers(scorer)
        for _ in range(2):
            await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        scorer.current = scorer.fast
        await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        assert r.breaker.snapshot()["consecutive_failures"] == 0
        assert r.breaker.state == "closed"

    def test_half_open_admits_a_single_trial(self):
        clock = FakeClock()
        breaker = CircuitBreaker(1, 5.0, clock=clock)
        breaker.record_failure()
        assert not breaker.allow()
        clock.now += 5.0
        assert breaker.allow()
        assert breaker.state == "half_open"
        assert not breaker.allow()  # a second caller waits for the trial's verdict

    def test_straggler_success_does_not_close_an_open_breaker(self):
        breaker = CircuitBreaker(1, 5.0, clock=FakeClock())
        breaker.record_failure()
        breaker.record_success()
        assert breaker.state == "open"

    async def test_breaker_state_is_exported_to_prometheus(self, rerankers):
        r = rerankers(FailingScorer())
        for _ in range(3):
            await r.rerank(QUERY, CANDIDATES)
        families = {f.name: f for f in text_string_to_metric_families(r.metrics.prometheus_text().decode())}
        states = {s.labels["rerank_breaker_state"]: s.value for s in families["rerank_breaker_state"].samples}
        assert states == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
        assert r.metrics_json()["breaker"]["state"] == "open"


class TestFeatureFlag:
    async def test_disabled_returns_ann_order_without_loading(self, rerankers, model_dir):
        built = []
        r = rerankers(settings=make_settings(model_dir, rerank_enabled=False),
                      factory=lambda s: built.append(1))
        assert_ann_order(await r.maybe_rerank(QUERY, CANDIDATES), CANDIDATES)
        assert built == [] and not r.loaded
        assert r.metrics_json()["rerank_skipped_total"] == 0

    async def test_enabled_maybe_rerank_uses_the_model(self, rerankers):
        scorer = InstantScorer()
        results = await rerankers(scorer).maybe_rerank(QUERY, CANDIDATES)
        assert scorer.calls == 1
        assert [x.index for x in results] == list(range(len(CANDIDATES)))[::-1]

    async def test_env_flag_false_disables_the_module_api(self, default_reranker_env, monkeypatch):
        monkeypatch.setenv("RERANK_ENABLED", "false")
        rr.reset_reranker()
        assert_ann_order(await rr.maybe_rerank(QUERY, CANDIDATES), CANDIDATES)
        assert not rr.get_reranker().loaded
        status = rr.reranker_status()
        assert status["enabled"] is False and "RERANK_ENABLED" in status["reason"]

    async def test_the_kill_switch_takes_effect_without_a_restart(self, rerankers, monkeypatch):
        scorer = InstantScorer()
        r = rerankers(scorer)
        monkeypatch.delenv("RERANK_ENABLED", raising=False)
        await r.maybe_rerank(QUERY, CANDIDATES)
        monkeypatch.setenv("RERANK_ENABLED", "false")  # same process, same reranker
        assert_ann_order(await r.maybe_rerank(QUERY, CANDIDATES), CANDIDATES)
        assert scorer.calls == 1
        monkeypatch.setenv("RERANK_ENABLED", "true")
        await r.maybe_rerank(QUERY, CANDIDATES)
        assert scorer.calls == 2
        snapshot = r.metrics_json()
        assert (snapshot["enabled"], snapshot["enabled_changes"]) == (True, 2)
        families = {f.name: f for f in text_string_to_metric_families(r.metrics.prometheus_text().decode())}
        assert families["rerank_enabled"].samples[0].value == 1.0
        assert families["rerank_enabled_changes"].samples[0].value == 2.0

    async def test_env_flag_default_reranks_with_real_model(self, default_reranker_env):
        results = await rr.maybe_rerank(QUERY, CANDIDATES)
        assert rr.get_reranker().loaded
        assert sorted(x.index for x in results) == list(range(len(CANDIDATES)))
        assert rr.get_rerank_metrics()["device"] == "cpu"
        assert rr.reranker_status()["available"] is True

    async def test_missing_model_fails_open_as_model_unavailable(self, rerankers, tmp_path):
        r = rerankers(settings=make_settings(tmp_path / "missing"), factory=rr.service._cross_encoder_from_settings)
        status = r.status()
        assert status["available"] is False and "export-reranker" in status["reason"]
        assert_ann_order(await r.maybe_rerank(QUERY, CANDIDATES), CANDIDATES)
        assert r.metrics_json()["rerank_skipped_by_reason"]["model_unavailable"] == 1
        assert r.breaker.state == "closed"  # a missing model is not a model failure

    async def test_load_failure_is_remembered_for_the_cooldown(self, rerankers, tmp_path):
        attempts = []

        def factory(settings):
            attempts.append(1)
            return rr.service._cross_encoder_from_settings(settings)

        clock = FakeClock()
        r = rerankers(settings=make_settings(tmp_path / "missing"), factory=factory, clock=clock)
        await r.maybe_rerank(QUERY, CANDIDATES)
        await r.maybe_rerank(QUERY, CANDIDATES)
        assert len(attempts) == 1
        clock.now += 31
        await r.maybe_rerank(QUERY, CANDIDATES)
        assert len(attempts) == 2

    def test_status_before_loading_does_not_load(self, rerankers, model_dir):
        built = []
        r = rerankers(settings=make_settings(model_dir), factory=lambda s: built.append(1))
        status = r.status()
        assert status["available"] is True and status["device"] is None and not status["loaded"]
        assert built == []


class TestMetrics:
    async def test_json_has_the_seed_shape(self, rerankers):
        r = rerankers(InstantScorer())
        await r.rerank(QUERY, CANDIDATES)
        metrics = json.loads(json.dumps(r.metrics_json()))
        assert set(metrics) >= {"rerank_skipped_total", "rerank_latency_ms", "device",
                                "rerank_skipped_by_reason", "breaker"}
        assert set(metrics["rerank_latency_ms"]) >= {"p50", "p95", "max"}
        assert metrics["device"] == "fake"

    async def test_latency_percentiles_are_ordered(self, rerankers, model_dir):
        r = rerankers(settings=make_settings(model_dir), factory=rr.service._cross_encoder_from_settings)
        for _ in range(5):
            await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        latency = r.metrics_json()["rerank_latency_ms"]
        assert latency["count"] == 5
        assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]

    def test_json_before_any_call(self):
        snap = RerankMetrics().snapshot()
        assert snap["rerank_latency_ms"] == {"p50": None, "p95": None, "max": None, "count": 0}
        assert snap["rerank_skipped_total"] == 0 and snap["device"] is None

    async def test_prometheus_text_parses_with_expected_families(self, rerankers):
        r = rerankers(SlowScorer())
        await r.rerank(QUERY, CANDIDATES, timeout_ms=10)
        families = {f.name: f for f in text_string_to_metric_families(r.metrics.prometheus_text().decode())}
        assert families["rerank_latency_seconds"].type == "histogram"
        assert families["rerank_tokenize_seconds"].type == "histogram"
        assert families["rerank_inference_seconds"].type == "histogram"
        skipped = {s.labels["reason"]: s.value for s in families["rerank_skipped"].samples
                   if s.name == "rerank_skipped_total"}
        assert skipped == {"timeout": 1.0, "error": 0.0, "circuit_open": 0.0, "model_unavailable": 0.0}

    def test_the_data_key_cache_counters_are_served_as_prometheus_counters(self):
        from pymem.tenant_keys import key_metrics

        families = {f.name: f for f in text_string_to_metric_families(RerankMetrics().prometheus_text().decode())}
        served = {name: families[f"pymem_data_key_{name}"].samples[0].value for name in key_metrics()}
        assert set(served) == {"hits", "misses", "unwraps", "creates", "provider_errors"}
        assert served == {name: float(value) for name, value in key_metrics().items()}

    def test_latency_buckets_include_budget_points(self):
        text = RerankMetrics().prometheus_text().decode()
        bounds = {s.labels["le"] for f in text_string_to_metric_families(text)
                  if f.name == "rerank_latency_seconds" for s in f.samples if "le" in s.labels}
        assert {"0.05", "0.15", "0.25"} <= bounds

    async def test_stage_histograms_observed_on_success_only(self, rerankers):
        r = rerankers(InstantScorer())
        await r.rerank(QUERY, CANDIDATES)
        text = r.metrics.prometheus_text().decode()
        counts = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name.endswith("_count")}
        assert counts["rerank_tokenize_seconds_count"] == 1
        assert counts["rerank_inference_seconds_count"] == 1
        assert counts["rerank_latency_seconds_count"] == 1

    async def test_registries_are_isolated(self, rerankers):
        a, b = rerankers(FailingScorer()), rerankers(InstantScorer())
        await a.rerank(QUERY, CANDIDATES)
        assert a.metrics_json()["rerank_skipped_total"] == 1
        assert b.metrics_json()["rerank_skipped_total"] == 0
        assert REGISTRY.get_sample_value("rerank_skipped_total", {"reason": "error"}) is None

    def test_unknown_skip_reason_is_rejected(self):
        with pytest.raises(ValueError):
            RerankMetrics().count_skip("bored")

    async def test_model_load_is_reported(self, rerankers, model_dir):
        r = rerankers(settings=make_settings(model_dir), factory=rr.service._cross_encoder_from_settings)
        await r.rerank(QUERY, CANDIDATES, timeout_ms=60_000)
        model = r.metrics_json()["model"]
        assert model["device"] == "cpu" and model["variant"] == "int8"
        assert float(model["load_ms"]) > 0

    async def test_asgi_app_serves_prometheus_and_the_json(self, rerankers):
        r = rerankers(FailingScorer())
        await r.rerank(QUERY, CANDIDATES)
        app = metrics_app(r)
        status, headers, body = await _asgi_get(app, "/metrics")
        assert status == 200 and headers[b"content-type"].startswith(b"text/plain")
        assert "rerank_latency_seconds" in {f.name for f in text_string_to_metric_families(body.decode())}
        status, headers, body = await _asgi_get(app, "/metrics/memory")
        assert status == 200 and headers[b"content-type"] == b"application/json"
        assert json.loads(body)["rerank_skipped_by_reason"]["error"] == 1

    async def test_http_server_is_prometheus_clients_on_loopback(self, rerankers):
        r = rerankers(FailingScorer())
        await r.rerank(QUERY, CANDIDATES)
        server, thread = start_metrics_server(port=0, reranker=r)
        try:
            host, port = server.server_address[:2]
            assert host == "127.0.0.1"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
            assert {"rerank_latency_seconds", "rerank_skipped"} <= names
        finally:
            server.shutdown()
            thread.join(timeout=10)


async def _asgi_get(app, path: str) -> tuple[int, dict, bytes]:
    """One GET through an ASGI app, without a server."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [],
             "http_version": "1.1", "scheme": "http", "root_path": ""}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


class TestQueryMemoryRerank:
    """Step 2e: query_memory reranks the opened ANN candidates with the real model."""

    async def test_results_carry_distance_and_rerank_score(self, default_reranker_env, aconn):
        from pymem import repository
        from pymem.repository import ChunkInput

        user = f"rerank-user-{np.random.default_rng().integers(1 << 30)}"
        rng = np.random.default_rng(5)
        base = rng.standard_normal(384).astype(np.float32)
        texts = [f"candidate passage number {i} about {word}" for i, word in
                 enumerate(["tea", "coffee", "rivers", "sourdough", "trains", "maps", "owls", "jazz"])]
        await repository.index_memory_chunks(aconn, user, [
            ChunkInput("doc", "s", t, base + 0.1 * i * rng.standard_normal(384).astype(np.float32))
            for i, t in enumerate(texts)])
        before = rr.get_rerank_metrics()["rerank_latency_ms"]
        hits = await repository.query_memory(aconn, user, "a query about coffee", base, k=5, candidates=8)

        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(h.distance is not None for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        # Model scores, not the ANN fallback's 1 - i/n. (Exact values depend on batch
        # composition under int8 dynamic quantization, so they are not compared.)
        assert scores != pytest.approx([1 - i / 8 for i in range(5)])
        assert all(0.0 < x < 1.0 for x in scores)
        assert all(h.reranked for h in hits)
        assert rr.get_rerank_metrics()["rerank_skipped_total"] == 0
        assert rr.get_rerank_metrics()["rerank_latency_ms"] != before

        plain = await repository.query_memory(aconn, user, "a query about coffee", base, k=5, candidates=8,
                                              rerank=False)
        assert not any(h.reranked for h in plain)
        assert [h.score for h in plain] == pytest.approx([1 - i / 8 for i in range(5)])
