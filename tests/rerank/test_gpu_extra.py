"""The gpu extra on a machine without a GPU: onnxruntime-gpu installed, CUDA not usable.

A venv gets the product with ``onnxruntime-gpu`` alone, without the extra's CUDA
and cuDNN wheels (the package is enough to show the behaviour, and keeps the
download small). ``onnxruntime-gpu`` then lists the CUDA execution provider as
available although nothing can run on it. pymem must see through that:
``PYMEM_RERANK_DEVICE=auto`` runs on the CPU with one warning naming what is
missing, the metrics say ``cpu``, and ``cuda`` refuses with an error that names it.
On a machine with an NVIDIA GPU this test does not apply (it would get CUDA).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pymem.onnx_export import export_reranker
from pymem_devtools.tiny_reranker import build_tiny_cross_encoder
from tests.utils import source_copy

SCRIPT = textwrap.dedent("""
    import asyncio, json, logging, sys
    logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(name)s: %(message)s")
    import onnxruntime
    from pymem.rerank import CrossEncoder, DeviceUnavailableError, get_rerank_metrics, rerank

    model_dir = sys.argv[1]
    first = CrossEncoder(model_dir, device="auto")
    second = CrossEncoder(model_dir, device="auto")
    ranked = asyncio.run(rerank("coffee", ["about tea", "about coffee"]))  # PYMEM_RERANK_DEVICE=auto
    try:
        CrossEncoder(model_dir, device="cuda")
        cuda_error = None
    except DeviceUnavailableError as exc:
        cuda_error = str(exc)
    print(json.dumps({"providers": onnxruntime.get_available_providers(), "devices": [first.device, second.device],
                      "metrics_device": get_rerank_metrics()["device"], "reranked": [r.reranked for r in ranked],
                      "cuda_error": cuda_error}))
""")


def _nvidia_gpu_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists()


@pytest.fixture(scope="module")
def gpu_venv(tmp_path_factory) -> Path:
    """A venv with the product, onnxruntime-gpu (alone), tokenizers and prometheus-client."""
    root = tmp_path_factory.mktemp("gpu-extra")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE")}
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env)
    python = root / "venv" / "bin" / "python"
    packages = ["onnxruntime-gpu>=1.21", "tokenizers>=0.21", "prometheus-client>=0.20", str(source_copy(root / "src"))]
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The tiny random-weight cross-encoder, exported by the real export code (int8 + fp16)."""
    root = tmp_path_factory.mktemp("gpu-model")
    checkpoint = build_tiny_cross_encoder(root / "checkpoint")
    export_reranker(str(checkpoint), root / "model", int8=True, fp16=True, progress=False)
    return root / "model"


@pytest.mark.skipif(_nvidia_gpu_present(), reason="this machine has an NVIDIA GPU: the extra would really get CUDA")
def test_without_a_gpu_auto_runs_on_the_cpu_with_one_warning_and_cuda_names_what_is_missing(gpu_venv, model_dir,
                                                                                           tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE")}
    env.update(PYMEM_RERANK_MODEL=str(model_dir), PYMEM_RERANK_DEVICE="auto", RERANK_ENABLED="true",
               PYMEM_HOME=str(tmp_path))
    (tmp_path / "probe.py").write_text(SCRIPT)
    done = subprocess.run([str(gpu_venv), "probe.py", str(model_dir)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "CUDAExecutionProvider" in result["providers"]  # what onnxruntime-gpu claims
    assert result["devices"] == ["cpu", "cpu"] and result["metrics_device"] == "cpu"
    assert result["reranked"] == [True, True]  # the CPU really reranked
    warnings = [line for line in done.stderr.splitlines() if line.startswith("LOG WARNING")]
    assert len(warnings) == 1, done.stderr
    assert "running on CPU" in warnings[0] and "libcuda.so.1" in warnings[0]
    assert "Failed to load library" not in done.stderr  # no CUDA session was attempted in vain
    error = result["cuda_error"]
    assert error.startswith("PYMEM_RERANK_DEVICE=cuda, but CUDA cannot run here:")
    assert "no NVIDIA driver (libcuda.so.1" in error
    assert "CUDA/cuDNN libraries" in error and "pymem-store[gpu]" in error
