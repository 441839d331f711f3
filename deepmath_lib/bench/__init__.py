"""Benchmarks, all in this package: `deepmath bench sandbox | rollouts | grading`.

Each prints a table, then one JSON line (its last), and stores that JSON with the machine's conditions under
`data/results/bench/<name>.json`, from which `deepmath report` writes docs/benchmarks.md and
`deepmath figures` draws the sandbox-latency figure. Comparisons are made side by side in one run, as ratios.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from ..paths import results_root
from ..results import atomic_write_json


def bench_dir() -> Path:
    """`<results root>/bench`: `data/results/bench` in a checkout, `./runs/results/bench` from a wheel."""
    return results_root() / "bench"


def conditions() -> dict:
    """What the figures depend on: CPU model and count, load average, date, library versions."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def save(name: str, result: dict, out_dir: str | Path | None = None, cond: dict | None = None) -> Path:
    """Store a benchmark's JSON with the conditions (`cond` when taken at the start, else now) as
    `<out_dir>/<name>.json`; returns the path."""

    path = Path(out_dir or bench_dir()) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    cond = {**cond, "load_taken": "start"} if cond else conditions()
    return atomic_write_json({**result, "conditions": cond}, path)


def load(name: str, out_dir: str | Path | None = None) -> dict:
    """A stored benchmark result; FileNotFoundError names the command that makes it."""
    import json

    path = Path(out_dir or bench_dir()) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark result at {path}; run `deepmath bench {name.split('_')[0]}`")
    return json.loads(path.read_text())
