"""Export Hugging Face models to ONNX: cross-encoders for :mod:`pymem.rerank`, and
sentence embedders for the demo's embedder, :mod:`pymem_devtools.minilm` (:func:`export_sentence_embedder`).

``export_reranker("cross-encoder/ms-marco-TinyBERT-L2-v2", "~/.pymem/models/ms-marco-TinyBERT-L2-v2",
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

A sentence embedder's export (:func:`export_sentence_embedder`) writes the same layout
with one fp32 variant whose ``sentence_embedding`` output is already mean-pooled and
L2-normalised; it refuses weights whose sha256 differs from the pinned one.

Both exports build in a hidden staging directory and replace ``out_dir`` only when
every step, parity included, has passed.

torch, transformers, optimum and onnx are imported inside the functions, so importing
this module (as :mod:`pymem.rerank` does, for the manifest constants) stays cheap.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .model_files import MANIFEST_NAME, VARIANTS, sha256_file
from .errors import ExportError

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
#: The reranker pymem is tuned for (PYMEM_RERANK_MODEL's default directory is named after it).
DEFAULT_RERANKER = "cross-encoder/ms-marco-TinyBERT-L2-v2"

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
        out_dir: destination directory, e.g. ``~/.pymem/models/ms-marco-TinyBERT-L2-v2`` (where
            ``PYMEM_RERANK_MODEL`` points by default).
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
    out = Path(out_dir)
    steps = ["load", "export fp32", *(["quantize int8"] if int8 else []),
             *(["convert fp16"] if fp16 else []), "parity", "manifest"]
    with _staged_export(out, overwrite, "export-reranker", steps, progress) as (staging, step):
        step("load")
        model, tokenizer = _load(source)
        pairs = parity_pairs()
        encoded = tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True,
                            truncation=True, max_length=PARITY_MAX_LENGTH, return_tensors="np")
        reference = _torch_logits(model, encoded)
        pruned = prune_to_cls and _prune_last_layer(model, encoded, reference, atol)

        step("export fp32")
        _optimum_export(model, staging, "text-classification", opset, preprocessors=[tokenizer])

        built = ["fp32"]
        if int8:
            step("quantize int8")
            _quantize_int8(staging / VARIANTS["fp32"][0], staging / VARIANTS["int8"][0])
            built.append("int8")
        if fp16:
            step("convert fp16")
            _convert_fp16(staging / VARIANTS["fp32"][0], staging / VARIANTS["fp16"][0], model.config)
            built.append("fp16")

        step("parity")
        groups = len(_PARITY_QUERIES)
        variants = {name: _variant_entry(staging, name,
                                         _parity(staging / VARIANTS[name][0], encoded, reference, groups))
                    for name in built}
        fp32_diff = variants["fp32"]["parity"]["max_abs_diff"]
        if fp32_diff is None or fp32_diff > atol:
            raise ExportError(f"ONNX fp32 output differs from PyTorch by {fp32_diff} "
                              f"(> atol {atol}); the export is not trustworthy")

        step("manifest")
        manifest = _manifest(source, model.config, staging / VARIANTS["fp32"][0], pruned,
                             variants, len(pairs))
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@contextmanager
def _staged_export(out: Path, overwrite: bool, desc: str, steps: Sequence[str], progress: bool):
    """Build an export in a hidden staging dir next to ``out``, one named step at a time.

    Yields ``(staging, step)``. ``step(name)`` closes the previous step and opens ``name``
    on a progress bar (stderr) and in the log, so a slow export always says what it is
    doing. ``out`` is replaced only when the body finishes; on any error the staging dir
    is removed and ``out`` is left as it was.
    """
    from tqdm import tqdm

    _check_output(out, overwrite)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    bar = tqdm(total=len(steps), desc=desc, unit="step", disable=not progress, file=sys.stderr)
    opened = []

    def step(name: str) -> None:
        if opened:
            bar.update()
        opened.append(name)
        bar.set_postfix_str(name)
        log.info("%s: %s", desc, name)

    try:
        staging.mkdir(parents=True)
        yield staging, step
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        bar.update()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()


def _optimum_export(model, staging: Path, task: str, opset: int | None, **kwargs) -> None:
    from optimum.exporters.onnx import onnx_export_from_model

    onnx_export_from_model(model, staging, task=task, opset=opset, do_validation=False,
                           device="cpu", **kwargs)
    if not (staging / VARIANTS["fp32"][0]).is_file():
        raise ExportError("optimum did not write model.onnx; see its log above")


def _variant_entry(staging: Path, name: str, parity: dict) -> dict:
    """A manifest's record of one variant: file, precision, providers, sha256, size, parity."""
    file, precision, providers = VARIANTS[name]
    return {"file": file, "precision": precision, "providers": providers,
            "sha256": sha256_file(staging / file), "size_bytes": (staging / file).stat().st_size,
            "parity": parity}


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
    manifest = _base_manifest(source, "text-classification", config, fp32_path)
    manifest["architecture"]["num_labels"] = config.num_labels
    return {**manifest, "graph": {"cls_only_last_layer": pruned}, "variants": variants,
            "parity": {"reference": "PyTorch fp32 (transformers), same weights, unmodified graph",
                       "pairs": pairs, "max_length": PARITY_MAX_LENGTH}}


def _base_manifest(source: str, task: str, config, fp32_path: Path) -> dict:
    """What every export's manifest records: source, task, architecture, opset, tools, time."""
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
        "task": task,
        "architecture": {key: getattr(config, key, None) for key in (
            "model_type", "architectures", "num_hidden_layers", "hidden_size",
            "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings")},
        "opset": opset,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": {"optimum": optimum.version.__version__, "onnxruntime": onnxruntime.__version__,
                  "transformers": transformers.__version__, "torch": torch.__version__},
    }


# ----------------------------------------------------------------- sentence embedders

#: The graph output that holds the finished sentence embeddings (pooled, L2-normalised).
SENTENCE_EMBEDDING_OUTPUT = "sentence_embedding"
WEIGHTS_FILE = "model.safetensors"
# Parity sentences: empty, short, accented and emoji, and one far past max_seq_length,
# so that padding, truncation and the mask-weighted mean are all exercised.
_PARITY_SENTENCES = [
    "",
    "ok",
    "Project Osprey launches on March 3rd after the security review.",
    "Row-level security keeps every tenant's memories apart, even on a shared index.",
    "Crème brûlée, jalapeño and 🙂 in one line; numbers 12345 and symbols #@!",
    "How long should bread dough rest in the fridge?",
    "vector " * 400,
]


def export_sentence_embedder(source_dir: str | Path, out_dir: str | Path, *, expected_sha256: str,
                             source_label: str | None = None, opset: int | None = None,
                             atol: float = 1e-4, min_cosine: float = 0.9999,
                             overwrite: bool = False, progress: bool = True) -> dict:
    """Export a sentence-transformers checkpoint (Transformer, mean Pooling, Normalize) to ONNX.

    Mean pooling over the attention mask and the L2 normalisation are part of the ONNX
    graph (optimum's sentence-transformers export): its ``sentence_embedding`` output is
    the finished vector, so no runtime can pool differently from the model's definition,
    and on CUDA only ``(n, dim)`` floats come back to the host.

    The weights are checked first, fail-closed: the checkpoint is copied to a private
    temporary dir and the *copy's* ``model.safetensors`` must have ``expected_sha256``;
    the export then reads only that copy, so the file cannot change between check and load.

    Args:
        source_dir: a local sentence-transformers checkpoint (``modules.json``,
            ``model.safetensors``, ``tokenizer.json`` ...). Nothing is downloaded.
        out_dir: destination directory, e.g. ``onnx_models/all-MiniLM-L6-v2``.
        expected_sha256: hex sha256 the weights must have.
        source_label: what the manifest names as the source (default: ``source_dir``).
        opset: ONNX opset; ``None`` lets optimum choose.
        atol: largest accepted |ONNX - PyTorch| difference of any embedding component.
        min_cosine: smallest accepted cosine between an ONNX and a PyTorch embedding.
        overwrite: replace an existing export in ``out_dir``.
        progress: show a progress bar on stderr.

    Returns:
        The manifest written to ``out_dir/manifest.json``. Besides the reranker's fields it
        records ``source_sha256`` and ``embedding`` (dimension, pooling, max_seq_length).

    Raises:
        ExportError: weights missing or not matching ``expected_sha256``, a checkpoint that is
            not a mean-pooled, normalised sentence-transformers model, or parity out of bounds.
    """
    out = Path(out_dir)
    steps = ["verify weights", "load", "export fp32", "parity", "manifest"]
    with _staged_export(out, overwrite, "export-embedder", steps, progress) as (staging, step), \
            tempfile.TemporaryDirectory(prefix="pymem-embedder-") as scratch:
        step("verify weights")
        checkpoint = _verified_copy(Path(source_dir), Path(scratch) / "checkpoint", expected_sha256)

        step("load")
        model = _load_sentence_transformer(checkpoint)
        max_length = model.max_seq_length
        encoded = model.tokenizer(_PARITY_SENTENCES, padding=True, truncation=True,
                                  max_length=max_length, return_tensors="np")
        reference = _mean_pooled_reference(checkpoint, encoded)

        step("export fp32")
        _optimum_export(model, staging, "feature-extraction", opset)

        step("parity")
        parity = _embedding_parity(staging / VARIANTS["fp32"][0], encoded, reference)
        if parity["max_abs_diff"] > atol or parity["min_cosine"] < min_cosine:
            raise ExportError(f"ONNX embeddings differ from PyTorch's (max |diff| "
                              f"{parity['max_abs_diff']:.2e} > {atol} or min cosine "
                              f"{parity['min_cosine']:.6f} < {min_cosine}); the export is not trustworthy")

        step("manifest")
        import sentence_transformers

        config = model[0].auto_model.config
        manifest = _base_manifest(source_label or str(source_dir), "feature-extraction", config,
                                  staging / VARIANTS["fp32"][0])
        manifest["tools"]["sentence_transformers"] = sentence_transformers.__version__
        manifest.update({
            "source_sha256": {WEIGHTS_FILE: expected_sha256},
            "embedding": {"dimension": int(reference.shape[1]), "output": SENTENCE_EMBEDDING_OUTPUT,
                          "pooling": "mean over attention_mask", "normalized": "L2",
                          "pooling_in_graph": True, "max_seq_length": max_length},
            "variants": {"fp32": _variant_entry(staging, "fp32", parity)},
            "parity": {"reference": "PyTorch fp32: transformers AutoModel, mean pooling, L2 "
                                    "normalisation (sentence-transformers' semantics), same weights",
                       "sentences": len(_PARITY_SENTENCES), "max_length": max_length},
        })
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _verified_copy(source: Path, dest: Path, expected_sha256: str) -> Path:
    weights = source / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights} is missing; the checkpoint must hold {WEIGHTS_FILE}")
    shutil.copytree(source, dest)
    actual = sha256_file(dest / WEIGHTS_FILE)
    if actual != expected_sha256.lower():
        raise ExportError(f"refusing to export {weights}: its sha256 is {actual}, expected "
                          f"{expected_sha256} (a corrupted or tampered install; reinstall it)")
    return dest


def _load_sentence_transformer(checkpoint: Path):
    from sentence_transformers import SentenceTransformer

    try:
        # eager attention, for the same reason as the reranker (see _load); safetensors
        # only, so no other weight file in the directory can be loaded instead.
        model = SentenceTransformer(str(checkpoint), device="cpu", local_files_only=True,
                                    model_kwargs={"attn_implementation": "eager",
                                                  "use_safetensors": True})
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load the sentence-transformers checkpoint: {exc}") from exc
    modules = [type(m).__name__ for m in model]
    if modules != ["Transformer", "Pooling", "Normalize"] or model[1].get_pooling_mode_str() != "mean":
        raise ExportError(f"expected Transformer -> mean Pooling -> Normalize, found {' -> '.join(modules)}")
    if not getattr(model.tokenizer, "is_fast", False):
        raise ExportError("the checkpoint has no fast tokenizer (tokenizer.json); pymem's runtime needs one")
    return model.eval()


def _mean_pooled_reference(checkpoint: Path, encoded):
    """sentence-transformers' embeddings computed without it: transformers' AutoModel,
    mean over the attention mask, L2 normalisation."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint, local_files_only=True, use_safetensors=True).eval()
    feed = {k: torch.from_numpy(v) for k, v in encoded.items()}
    with torch.inference_mode():
        tokens = model(**feed).last_hidden_state
    mask = feed["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def _embedding_parity(model_path: Path, encoded, reference) -> dict:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    ours = session.run([SENTENCE_EMBEDDING_OUTPUT],
                       {k: v.astype(np.int64) for k, v in encoded.items() if k in names})[0]
    cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    return {"measured": True, "provider": "CPUExecutionProvider",
            "max_abs_diff": float(np.abs(ours - reference).max()), "min_cosine": float(cosine.min())}


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
