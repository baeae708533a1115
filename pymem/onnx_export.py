"""Export a Hugging Face cross-encoder to ONNX for :mod:`pymem.rerank`.

``export_reranker("cross-encoder/ms-marco-TinyBERT-L2-v2", "onnx_models/ms-marco-TinyBERT-L2-v2",
int8=True, fp16=True)`` writes into the output directory:

``model.onnx``       fp32, runs on the CPU and CUDA execution providers;
``model_int8.onnx``  dynamic int8 quantization, for the CPU provider only (its
                     ``DynamicQuantizeLinear``/``MatMulInteger`` ops have no CUDA kernels);
``model_fp16.onnx``  fp16 with fused attention and fp32 inputs/outputs, for CUDA;
``tokenizer.json`` ... the tokenizer files, read at run time by the Rust ``tokenizers``;
``manifest.json``    source, architecture, opset, each variant's file, sha256 and parity
                     against PyTorch, and the creation time.

The export uses optimum-onnx with ``task="text-classification"``: automatic task
detection fails on the hub's ``text-ranking`` tag of these models.

One graph change is made, and it is exact. A cross-encoder's score depends only on
the [CLS] position of the last layer (the pooler reads ``hidden[:, 0]``), so the last
BERT layer is exported as a cross-attention of the [CLS] row over all positions: its
attention rows, output projection and feed-forward for the other positions are never
computed. On the 2-layer TinyBERT that removes close to half the work. The parity
check below compares against the *unmodified* PyTorch model, and if the pruned model
does not match it, the export keeps the layer whole.

torch, transformers, optimum and onnx are imported inside the functions, so importing
this module (as :mod:`pymem.rerank` does, for the manifest constants) stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

#: variant name -> (file name, precision, execution providers it is meant for)
VARIANTS = {
    "fp32": ("model.onnx", "fp32", ["CPUExecutionProvider", "CUDAExecutionProvider"]),
    "int8": ("model_int8.onnx", "int8-dynamic", ["CPUExecutionProvider"]),
    "fp16": ("model_fp16.onnx", "fp16", ["CUDAExecutionProvider"]),
}

# Hub ids of the ms-marco cross-encoders lost the hyphen in "L-2" when they were renamed.
_OLD_HUB_ID = re.compile(r"^(cross-encoder/ms-marco-(?:TinyBERT|MiniLM))-L-(\d+)(-v2)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# Parity inputs: lengths vary so padding and truncation are exercised too.
_PARITY_QUERIES = [
    "what is the capital of france",
    "how does row level security protect tenant data",
    "fast vector search in postgres",
]
_PARITY_PASSAGES = [
    "paris is the capital of france",
    "the cat sat on the mat",
    "row level security policy in postgres filters rows by tenant",
    "rain " * 3,
    "an index of vectors makes search fast " * 12,
    "python and rust code for a memory store with encryption keys",
    "mountain river city weather snow sun",
    "what how why when where " * 40,  # longer than max_length: truncated
]
PARITY_MAX_LENGTH = 256


class ExportError(RuntimeError):
    """The export cannot proceed; the message says why and what to do."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def renamed_hub_id(source: str) -> str | None:
    """The current hub id of a renamed ms-marco cross-encoder (``...-L-2-v2`` -> ``...-L2-v2``)."""
    old = _OLD_HUB_ID.match(source)
    return f"{old.group(1)}-L{old.group(2)}{old.group(3)}" if old else None


def parity_pairs() -> list[tuple[str, str]]:
    """The (query, passage) pairs used for parity, grouped by query."""
    return [(q, p) for q in _PARITY_QUERIES for p in _PARITY_PASSAGES]


def export_reranker(source: str, out_dir: str | Path, *, int8: bool = False, fp16: bool = False,
                    opset: int | None = None, atol: float = 1e-4, overwrite: bool = False,
                    prune_to_cls: bool = True, progress: bool = True) -> dict:
    """Export a cross-encoder (hub id or local checkpoint dir) to ``out_dir``.

    Args:
        source: a Hugging Face hub id such as ``cross-encoder/ms-marco-TinyBERT-L2-v2``
            (needs the internet once) or a local directory with ``config.json``, the
            weights and the tokenizer.
        out_dir: destination directory, e.g. ``onnx_models/ms-marco-TinyBERT-L2-v2``.
        int8: also write the dynamically quantized CPU variant.
        fp16: also write the fp16 CUDA variant.
        opset: ONNX opset; ``None`` lets optimum choose the architecture's default.
        atol: largest accepted |ONNX fp32 - PyTorch| logit difference on the parity pairs.
        overwrite: replace an existing export in ``out_dir``.
        prune_to_cls: export the last layer for the [CLS] row only (exact; see module doc).
        progress: show a progress bar on stderr.

    Returns:
        The manifest that was written to ``out_dir/manifest.json``.

    Raises:
        ExportError: bad source or output, a model that is not a one-logit
            cross-encoder, a failed download, or fp32 parity worse than ``atol``.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    _check_output(out, overwrite)
    steps = ["load", "export fp32", *(["quantize int8"] if int8 else []),
             *(["convert fp16"] if fp16 else []), "parity", "manifest"]
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    bar = tqdm(total=len(steps), desc="export-reranker", unit="step", disable=not progress,
               file=sys.stderr)
    try:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            log.info("export-reranker: %s", name)

        step("load")
        model, tokenizer = _load(source)
        pairs = parity_pairs()
        encoded = tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True,
                            truncation=True, max_length=PARITY_MAX_LENGTH, return_tensors="np")
        reference = _torch_logits(model, encoded)
        pruned = prune_to_cls and _prune_last_layer(model, encoded, reference, atol)
        bar.update()

        step("export fp32")
        staging.mkdir(parents=True)
        from optimum.exporters.onnx import onnx_export_from_model

        onnx_export_from_model(model, staging, task="text-classification", opset=opset,
                               preprocessors=[tokenizer], do_validation=False, device="cpu")
        if not (staging / VARIANTS["fp32"][0]).is_file():
            raise ExportError("optimum did not write model.onnx; see its log above")
        bar.update()

        built = ["fp32"]
        if int8:
            step("quantize int8")
            _quantize_int8(staging / VARIANTS["fp32"][0], staging / VARIANTS["int8"][0])
            built.append("int8")
            bar.update()
        if fp16:
            step("convert fp16")
            _convert_fp16(staging / VARIANTS["fp32"][0], staging / VARIANTS["fp16"][0], model.config)
            built.append("fp16")
            bar.update()

        step("parity")
        groups = len(_PARITY_QUERIES)
        variants = {}
        for name in built:
            file, precision, providers = VARIANTS[name]
            variants[name] = {"file": file, "precision": precision, "providers": providers,
                              "sha256": sha256_file(staging / file),
                              "size_bytes": (staging / file).stat().st_size,
                              "parity": _parity(staging / file, encoded, reference, groups)}
        fp32_diff = variants["fp32"]["parity"]["max_abs_diff"]
        if fp32_diff is None or fp32_diff > atol:
            raise ExportError(f"ONNX fp32 output differs from PyTorch by {fp32_diff} "
                              f"(> atol {atol}); the export is not trustworthy")
        bar.update()

        step("manifest")
        manifest = _manifest(source, model.config, staging / VARIANTS["fp32"][0], pruned,
                             variants, len(pairs))
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        bar.update()
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} is not empty; pass overwrite=True (--overwrite) to replace it")


def _load(source: str):
    """Load tokenizer + model, turning the usual failures into ExportError."""
    if not source or not source.strip():
        raise ExportError("MODEL_ID_OR_DIR is empty")
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ExportError(f"{source} is not a Hugging Face checkpoint (no config.json)")
    elif not _HUB_ID.match(source):
        raise ExportError(f"{source} is neither an existing directory nor a hub id like "
                          "'cross-encoder/ms-marco-TinyBERT-L2-v2'")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # eager attention exports a broadcast [B,1,1,L] mask that ONNX Runtime fuses;
        # the SDPA path materialises a [B,1,L,L] mask per batch.
        model = AutoModelForSequenceClassification.from_pretrained(
            source, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        hint = ""
        renamed = renamed_hub_id(source)
        if renamed:
            hint = f" This id was renamed: use {renamed}."
        elif not path.exists():
            hint = " Downloading from the hub needs the internet (and a valid id)."
        raise ExportError(f"cannot load {source}: {exc}.{hint}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{source} has no fast tokenizer (tokenizer.json); pymem's runtime "
                          "needs one")
    if model.config.num_labels != 1:
        raise ExportError(f"{source} has {model.config.num_labels} labels; a cross-encoder "
                          "reranker outputs exactly one relevance logit")
    return model, tokenizer


def _torch_logits(model, encoded):
    import torch

    feed = {k: torch.from_numpy(v) for k, v in encoded.items()}
    with torch.inference_mode():
        return model(**feed).logits[:, 0].float().numpy()


def _cls_only(layer):
    """Wrap one BERT layer so it computes the [CLS] row only (keys/values still see all)."""
    import torch

    class ClsOnlyLayer(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            cls = hidden_states[:, :1]
            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = attention_mask[:, :, :1, :]  # the [CLS] query row
            # Cross-attention: queries from [CLS], keys/values from every position.
            context = self.inner.attention.self(cls, attention_mask=attention_mask,
                                                encoder_hidden_states=hidden_states)[0]
            attended = self.inner.attention.output(context, cls)
            return (self.inner.feed_forward_chunk(attended),)

    return ClsOnlyLayer(layer)


def _prune_last_layer(model, encoded, reference, atol: float) -> bool:
    """Swap in the [CLS]-only last layer if the model is BERT and the logits still match."""
    base = getattr(model, "bert", None)
    if model.config.model_type != "bert" or base is None:
        return False
    layers = base.encoder.layer
    original = layers[-1]
    layers[-1] = _cls_only(original)
    try:
        diff = float(abs(_torch_logits(model, encoded) - reference).max())
    except Exception as exc:  # an unexpected BERT variant: keep the exact original
        log.warning("keeping the last layer whole: [CLS]-only pruning failed (%s)", type(exc).__name__)
        diff = float("inf")
    if diff > atol:
        layers[-1] = original
        return False
    return True


def _quantize_int8(src: Path, dst: Path) -> None:
    # Dynamic quantization of the plain graph: ONNX Runtime's own fusions still apply at
    # load time, and signed int8 weights use the VNNI/AVX-512 kernels where present.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _convert_fp16(src: Path, dst: Path, config) -> None:
    # Fuse attention/LayerNorm/GELU first where ONNX Runtime knows the architecture (the
    # fused CUDA kernels are what makes fp16 fast), then convert; keep_io_types leaves
    # the inputs int64 and the logits fp32.
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    if config.model_type in MODEL_TYPES:
        graph = optimize_model(str(src), model_type=config.model_type,
                               num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    else:
        graph = OnnxModel(onnx.load(str(src)))
    graph.convert_float_to_float16(keep_io_types=True)
    graph.save_model_to_file(str(dst))


def _parity(model_path: Path, encoded, reference, groups: int) -> dict:
    """Run a variant on the CPU provider and compare its logits with PyTorch's."""
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        logits = session.run(None, {k: v.astype(np.int64) for k, v in encoded.items() if k in names})[0][:, 0]
    except Exception as exc:  # e.g. an fp16 op without a CPU kernel: report, do not guess
        return {"measured": False, "max_abs_diff": None,
                "note": f"not measurable on CPUExecutionProvider: {type(exc).__name__}"}
    ours = logits.reshape(groups, -1)
    ref = reference.reshape(groups, -1)
    return {"measured": True, "provider": "CPUExecutionProvider",
            "max_abs_diff": float(np.abs(ours - ref).max()),
            "same_rank_order": bool(all((np.argsort(-a, kind="stable") == np.argsort(-b, kind="stable")).all()
                                        for a, b in zip(ours, ref))),
            "top1_agreement": float(np.mean(ours.argmax(1) == ref.argmax(1)))}


def _manifest(source: str, config, fp32_path: Path, pruned: bool, variants: dict, pairs: int) -> dict:
    import onnx
    import onnxruntime
    import optimum.version
    import torch
    import transformers

    graph = onnx.load(str(fp32_path), load_external_data=False)
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "task": "text-classification",
        "architecture": {key: getattr(config, key, None) for key in (
            "model_type", "architectures", "num_hidden_layers", "hidden_size",
            "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "num_labels")},
        "opset": opset,
        "graph": {"cls_only_last_layer": pruned},
        "variants": variants,
        "parity": {"reference": "PyTorch fp32 (transformers), same weights, unmodified graph",
                   "pairs": pairs, "max_length": PARITY_MAX_LENGTH},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": {"optimum": optimum.version.__version__, "onnxruntime": onnxruntime.__version__,
                  "transformers": transformers.__version__, "torch": torch.__version__},
    }


def format_summary(manifest: dict, out_dir: str | Path) -> str:
    """A short human-readable summary of an export, for the CLI."""
    lines = [f"exported {manifest['source']} -> {out_dir} (opset {manifest['opset']}, "
             f"cls-only last layer: {manifest['graph']['cls_only_last_layer']})"]
    for name, v in manifest["variants"].items():
        parity = v["parity"]
        diff = "n/a" if parity["max_abs_diff"] is None else f"{parity['max_abs_diff']:.2e}"
        lines.append(f"  {name:5} {v['file']:17} {v['size_bytes'] / 1e6:6.1f} MB  "
                     f"max|onnx-torch|={diff}  providers={','.join(v['providers'])}")
    return "\n".join(lines)
