"""Exported ONNX model directories: the manifest, the variants and their checksums.

Shared by the export code (:mod:`pymem.onnx_export`, which writes them) and the
runtimes that load them (:mod:`pymem.rerank`, :mod:`pymem_devtools.minilm`), so that a
runtime never imports the torch-side export module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from .errors import ModelFileError

MANIFEST_NAME = "manifest.json"

#: variant name -> (file name, precision, execution providers it is meant for)
VARIANTS = {
    "fp32": ("model.onnx", "fp32", ["CPUExecutionProvider", "CUDAExecutionProvider"]),
    "int8": ("model_int8.onnx", "int8-dynamic", ["CPUExecutionProvider"]),
    "fp16": ("model_fp16.onnx", "fp16", ["CUDAExecutionProvider"]),
}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file does not exist.

    Raises:
        ModelFileError: the file exists but is not readable JSON.
    """
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not readable JSON: {exc}") from exc


def pick_variant(model_dir: Path, manifest: dict | None, preference: Sequence[str]) -> tuple[str, Path]:
    """The first preferred variant present; its sha256 is checked against the manifest.

    Raises:
        ModelFileError: no preferred variant, a listed file missing or changed.
    """
    if manifest is None:  # a hand-made export: plain model.onnx, nothing to verify
        path = model_dir / VARIANTS["fp32"][0]
        if not path.is_file():
            raise ModelFileError(f"{model_dir} has neither {MANIFEST_NAME} nor model.onnx")
        return "fp32", path
    variants = manifest.get("variants", {})
    for name in preference:
        if name in variants:
            path = model_dir / variants[name]["file"]
            if not path.is_file():
                raise ModelFileError(f"{path} is listed in the manifest but missing")
            if sha256_file(path) != variants[name]["sha256"]:
                raise ModelFileError(f"{path} does not match its sha256 in the manifest; re-export")
            return name, path
    raise ModelFileError(f"{model_dir}/{MANIFEST_NAME} lists none of {', '.join(preference)}")
