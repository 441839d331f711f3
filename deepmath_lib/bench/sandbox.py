"""`deepmath bench sandbox`: median latency of three snippets under four executors, plus Sandbox creation.

Executors: bare `exec` in this process, our warm Sandbox, smolagents' LocalPythonExecutor (an AST interpreter)
and a fresh `python -c` process per snippet. The last line printed is one JSON object.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import warnings

from ..sandbox import Sandbox, start_zygote

SNIPPETS = {
    "trivial": "x = 1 + 1",
    "sympy_solve": "import sympy\nsympy.solve(sympy.Symbol('x')**2 - 2)",
    "loop_1e5": "s = 0\nfor i in range(100000):\n    s += i",
}
GOALS = {"overhead_ms": 1.0, "loop_speedup_vs_smolagents": 50.0, "creation_ms": 20.0}


def _median_ms(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(repeats: int = 30, slow_repeats: int = 3, quick: bool = False) -> dict:
    """Return {"latency_ms": {executor: {snippet: ms}}, "creation_ms": ms, ratios...}. `quick` (notebook 01 under
    nbval): 5 repeats and 1 of the slow executors instead of `repeats` and `slow_repeats`."""

    if quick:
        repeats, slow_repeats = 5, 1

    start_zygote()
    lat: dict[str, dict[str, float]] = {}

    ns: dict = {}
    lat["bare_exec"] = {
        k: _median_ms(lambda c=compile(code, "<b>", "exec"): exec(c, ns), repeats)
        for k, code in SNIPPETS.items()
    }

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb = Sandbox(timeout=60)
    try:
        lat["sandbox"] = {k: _median_ms(lambda c=code: sb.run(c), repeats) for k, code in SNIPPETS.items()}
    finally:
        sb.close()

    def create() -> None:
        Sandbox().close()

    creation_ms = _median_ms(create, repeats, warmup=2)
    first_run_ms = _median_ms(lambda: _create_and_run(Sandbox), max(3, repeats // 3))

    try:
        from smolagents.local_python_executor import LocalPythonExecutor

        smol = LocalPythonExecutor(additional_authorized_imports=["sympy", "numpy"], timeout_seconds=None)
        smol.send_tools({})
        lat["smolagents"] = {
            k: _median_ms(lambda c=code: smol(c), repeats if k != "loop_1e5" else slow_repeats)
            for k, code in SNIPPETS.items()
        }
    except ImportError:  # pragma: no cover
        lat["smolagents"] = {k: float("nan") for k in SNIPPETS}

    def proc(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    lat["process_per_snippet"] = {
        k: _median_ms(lambda c=code: proc(c), slow_repeats, warmup=0) for k, code in SNIPPETS.items()
    }

    return {
        "latency_ms": {e: {k: round(v, 4) for k, v in d.items()} for e, d in lat.items()},
        "creation_ms": round(creation_ms, 3),
        "create_and_first_run_ms": round(first_run_ms, 3),
        "overhead_ms": round(lat["sandbox"]["trivial"] - lat["bare_exec"]["trivial"], 4),
        "loop_overhead_ms": round(lat["sandbox"]["loop_1e5"] - lat["bare_exec"]["loop_1e5"], 4),
        "loop_speedup_vs_smolagents": round(lat["smolagents"]["loop_1e5"] / lat["sandbox"]["loop_1e5"], 1),
        "sympy_speedup_vs_process": round(
            lat["process_per_snippet"]["sympy_solve"] / lat["sandbox"]["sympy_solve"], 1
        ),
        "repeats": repeats,
    }


def _create_and_run(cls) -> None:
    with cls() as s:
        s.run("1")


def format_table(res: dict) -> str:
    lat = res["latency_ms"]
    execs = list(lat)
    w = 22
    lines = ["median latency (ms)".ljust(14) + "".join(e.rjust(w) for e in execs)]
    for k in SNIPPETS:
        lines.append(k.ljust(14) + "".join(f"{lat[e][k]:.3f}".rjust(w) for e in execs))
    lines.append("")
    for key, goal in GOALS.items():
        v = res[key]
        ok = v <= goal if key != "loop_speedup_vs_smolagents" else v >= goal
        lines.append(
            f"{key:<28} {v:>10.3f}   goal {'<=' if key != 'loop_speedup_vs_smolagents' else '>='} {goal:g}"
            f"   {'OK' if ok else 'MISSED'}"
        )
    lines.append(f"{'create_and_first_run_ms':<28} {res['create_and_first_run_ms']:>10.3f}")
    lines.append(f"{'sympy_speedup_vs_process':<28} {res['sympy_speedup_vs_process']:>10.1f}")
    return "\n".join(lines)
