"""Can ONNX Runtime run on CUDA here, and if not, what is missing.

ONNX Runtime's CUDA execution provider needs three things: the ``onnxruntime-gpu``
package (``pymem-store[gpu]``; with the CPU ``onnxruntime`` installed beside it, the
CPU package's files win and CUDA disappears), the CUDA and cuDNN libraries (the
extra's ``nvidia-*`` wheels, or a system install), and an NVIDIA driver with a GPU.
``onnxruntime-gpu`` lists the CUDA provider as available even when the libraries or
the GPU are missing; a session asked for it then falls back to the CPU and prints
errors. So pymem checks first, loads the libraries the way ONNX Runtime does
(``onnxruntime.preload_dlls()``, ORT >= 1.21), and names what is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import sys
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
DRIVER_LIBRARY = "libcuda.so.1"
GPU_EXTRA_HINT = "pip install 'pymem-store[gpu]' (onnxruntime-gpu with its CUDA and cuDNN wheels)"
# Arena growth by exactly what is requested (not doubling): with the length buckets
# warmed up at load, the arena reaches its steady size then and does not over-reserve
# VRAM that other processes on the GPU need.
_PROVIDER_OPTIONS = {
    "arena_extend_strategy": "kSameAsRequested",
    "cudnn_conv_algo_search": "HEURISTIC",
    "do_copy_in_default_stream": True,
}


def provider_options(device_id: int) -> dict:
    """ONNX Runtime's CUDA provider options for pymem's sessions on GPU ``device_id``."""
    return {"device_id": device_id, **_PROVIDER_OPTIONS}


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _loads(library: str) -> str | None:
    """None when ``library`` loads, else the loader's reason."""
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        return str(exc)
    return None


def preload_libraries(ort) -> None:
    """Load the CUDA and cuDNN libraries as ONNX Runtime would (``preload_dlls``, where the
    installed ORT has it). It prints a line per library it cannot load; the caller reports
    one problem instead, from loading ORT's CUDA provider, so those lines are dropped."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.redirect_stdout(io.StringIO()):
            preload()


def cuda_problems(ort) -> list[str]:
    """What keeps ``ort`` (the imported ``onnxruntime``) from running on CUDA; empty when nothing
    is known to.

    An empty list does not promise a GPU session: ONNX Runtime may still refuse the
    device (a GPU too old for the build, a device id that does not exist), which the
    caller finds out from the session's providers.
    """
    if CUDA not in ort.get_available_providers():
        problem = (f"this onnxruntime ({ort.__version__}) has no CUDA execution provider: {GPU_EXTRA_HINT} "
                   "instead of the rerank extra")
        if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
            problem += ("; onnxruntime and onnxruntime-gpu are both installed, and the CPU package hides the"
                        " GPU one: pip uninstall -y onnxruntime onnxruntime-gpu, then install the gpu extra")
        return [problem]
    problems = []
    # Checked where the driver library has this name (Linux); elsewhere the session's
    # providers tell.
    driver = _loads(DRIVER_LIBRARY) if sys.platform.startswith("linux") else None
    if driver is not None:
        problems.append(f"no NVIDIA driver ({driver}): this machine has no usable NVIDIA GPU")
    preload_libraries(ort)
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    libraries = _loads(str(provider)) if provider.is_file() else None
    if libraries is not None:
        problems.append(f"the CUDA/cuDNN libraries ONNX Runtime {ort.__version__} needs are missing ({libraries}): "
                        f"{GPU_EXTRA_HINT}, or install the CUDA and cuDNN versions its documentation names")
    return problems
