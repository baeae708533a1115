"""Run the benchmark suite: ``pymem-dev bench --scale {tiny,quick,full,xl}``.

``xl`` (a million rows, tenants sharing topics) runs the search benchmark only.

Writes ``<out>/<scale>.json`` (every figure, with the machine it ran on) and
``<out>/<scale>.md`` (the tables docs/performance.md quotes). Every ratio in them compares
two things measured in the same run.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pymem_devtools.bench.common import server_settings

BENCHES = ("crypto", "keys", "ingest", "search", "builds", "filtered", "langchain", "citus", "rerank", "e2e",
           "hybrid", "halfvec", "load", "soak")
SCALES = ("tiny", "quick", "full", "xl")
# The benchmarks a scale runs when --only does not narrow it.
SCALE_BENCHES = {"xl": ("search", "builds")}
# Relative to the working directory: benchmarks/results/ of a checkout, where the
# figures of docs/performance.md come from.
DEFAULT_OUT = Path("benchmarks") / "results"


def machine() -> dict:
    """What the figures were measured on."""
    import onnxruntime

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "gpu": "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def run_suite(scale: str, out: Path, only: list[str] | None = None) -> dict:
    """Run the benchmarks, write JSON + markdown into ``out``; return the report.

    With ``only``, the other benchmarks' results are kept from an existing report
    of the same scale, so one benchmark can be re-run without redoing the rest.
    """
    path = out / f"{scale}.json"
    report = {"scale": scale, "machine": machine(), "benches": {}}
    if only and path.exists():
        report["benches"] = json.loads(path.read_text())["benches"]
    allowed = SCALE_BENCHES.get(scale, BENCHES)
    if only and not set(only) <= set(allowed):
        raise ValueError(f"--scale {scale} runs only: {', '.join(allowed)}")
    for name in only or allowed:
        module = importlib.import_module(f"pymem_devtools.bench.bench_{name}")
        start, load_before = time.perf_counter(), _load_average()
        print(f"== {name} ({scale})", flush=True)
        result = module.run(scale)
        result["seconds"] = round(time.perf_counter() - start, 1)
        # What else kept the cores busy: the 1-minute load average before and after
        # (a section's own work counts too: it is a hint for comparing runs, not a filter).
        result["load_average_1min"] = [load_before, _load_average()]
        result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        result["server_settings"] = server_settings()
        report["benches"][name] = result
        print(result["markdown"], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    sections = [f"## {name}\n\n{report['benches'][name]['markdown'].strip()}\n"
                f"\n<sub>finished {report['benches'][name]['finished']}{_settings_note(report['benches'][name])}</sub>\n"
                for name in BENCHES if name in report["benches"]]
    header = (f"# pymem benchmarks ({scale})\n\n{report['machine']['cpus']} CPU cores, "
              f"GPU: {'yes' if report['machine']['gpu'] else 'none'}. "
              f"Command: `pymem-dev bench --scale {scale}` (`make bench` for full).\n\n")
    (out / f"{scale}.md").write_text(header + "\n".join(sections))
    return report


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


def _settings_note(result: dict) -> str:
    load = result.get("load_average_1min")
    note = f"; load average (1 min) before / after: {load[0]} / {load[1]}" if load else ""
    settings = result.get("server_settings") or {}
    return note + ("; Postgres: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) if settings else "")


def main(scale: str, out: Path, only: list[str] | None) -> int:
    """``pymem-dev bench``: run the suite, exiting cleanly on SIGTERM."""
    # SIGTERM would skip atexit and leave the embedded Postgres running; exit cleanly instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_suite(scale, out, only)
    return 0
