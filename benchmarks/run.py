"""Run the benchmark suite: ``pymem bench --scale {tiny,quick,full}``.

Writes ``<out>/<scale>.json`` (every figure, with the machine it ran on) and
``<out>/<scale>.md`` (the tables the README quotes). Every ratio in them compares
two things measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

BENCHES = ("crypto", "ingest", "search", "rerank", "e2e")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    import onnxruntime

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "gpu": "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def run_suite(scale: str, out: Path, only: list[str] | None = None) -> dict:
    """Run the benchmarks, write JSON + markdown into ``out``; return the report."""
    report = {"scale": scale, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "benches": {}}
    sections = []
    for name in only or BENCHES:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        print(f"== {name} ({scale})", flush=True)
        result = module.run(scale)
        result["seconds"] = round(time.perf_counter() - start, 1)
        report["benches"][name] = result
        sections.append(f"## {name}\n\n{result['markdown'].strip()}\n")
        print(result["markdown"], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{scale}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    header = (f"# pymem benchmarks ({scale})\n\nRun {report['started']} on {report['machine']['cpus']} CPU cores, "
              f"GPU: {'yes' if report['machine']['gpu'] else 'none'}. "
              f"Command: `pymem bench --scale {scale}`.\n\n")
    (out / f"{scale}.md").write_text(header + "\n".join(sections))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pymem benchmark suite")
    parser.add_argument("--scale", choices=("tiny", "quick", "full"), default="quick")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", choices=BENCHES)
    args = parser.parse_args(argv)
    run_suite(args.scale, args.out, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
