# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The executor: a fast sandbox that actually holds
#
# The agent's model writes short Python snippets mid-reasoning; `deepmath_lib.sandbox.Sandbox` runs them.
# The original used smolagents' `LocalPythonExecutor`, an AST interpreter: ~130x slower than Python on loops,
# with a timeout that does not bound wall time and an allow-list that `sympify` or `numpy.save` walk around.
#
# Ours is a process sandbox. A **zygote** (started once per host process) imports and warms sympy, numpy,
# scipy and mpmath, then forks one **worker per trajectory**, locked down once: rlimits (memory, CPU, no file
# writes, no core dumps), a seccomp filter (no sockets, exec, fork, ptrace, signals to others, mounts or
# namespaces), Landlock (read-only, only the Python trees), an empty network namespace, a scrubbed
# environment and its own process group. The wall clock is enforced from outside by killing the worker;
# the next call replays the successful snippets so the state survives. This notebook is a thin tour.

# %% tags=["parameters"]
profile = "nano"
quick = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"

# %%
import time
import warnings
from pathlib import Path

import pandas as pd

from deepmath_lib.sandbox import Sandbox, sandbox_features, start_zygote

t0 = time.perf_counter()
start_zygote()
print(f"zygote ready in {time.perf_counter() - t0:.1f} s")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    features = sandbox_features()
print("protections active in workers:", features)
for w in caught:
    print("warning:", w.message)

# %% [markdown]
# ## Snippets, REPL-style, with state across calls
# `run` returns stdout (and stderr), then the repr of a bare last expression; variables, functions and
# imports persist. `model_text()` is what the model reads inside its output block.

# %%
sb = Sandbox(timeout=2.0, memory_mb=512, max_output_chars=300)
for code in [
    "import sympy as sp\nx = sp.Symbol('x')\nroots = sp.solve(x**3 - 6*x**2 + 11*x - 6, x)\nroots",
    "def f(n):\n    return sum(k * k for k in range(n + 1))\nprint(f(10), sum(roots))",
    "sp.factorint(2**32 + 1)",
    "undefined_name + 1",
]:
    r = sb.run(code)
    print(f"--- {code.splitlines()[-1]!r}  ({r.duration_s * 1e3:.1f} ms)")
    print(r.model_text())

# %% [markdown]
# ## Each limit, shown
# Timeout (killed from outside, then state restored), memory, a refused import, a file write, the network.
# The last two escape the import allow-list on purpose: the OS layers are what must hold.

# %%
esc = (
    "_sys = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]"
    ".load_module('sys')\n_imp = _sys.modules['builtins'].__import__\n"
)
demos = {
    "timeout": "while True:\n    pass",
    "state after timeout": "f(3), roots",
    "memory": "big = bytearray(2 * 1024**3)",
    "refused import": "import subprocess",
    "file write": "import numpy as np\nnp.save('/tmp/pwned.npy', np.arange(3))",
    "file read": "open('/etc/shadow').read()",
    "network": esc + "_imp('socket').create_connection(('1.1.1.1', 80), timeout=1)",
    "process": esc + "_sys.modules['os'].system('touch /tmp/pwned')",
}
rows = []
for name, code in demos.items():
    r = sb.run(code)
    last = (r.model_text().strip().splitlines() or [""])[-1]
    rows.append(
        {
            "limit": name,
            "timed_out": r.timed_out,
            "ok": r.ok,
            "ms": round(r.duration_s * 1e3, 1),
            "model reads": last[:90],
        }
    )
pd.DataFrame(rows)

# %% [markdown]
# ## Red team
# Hostile snippets from `deepmath_lib.sandbox.redteam` (the same cases `tests/redteam` runs in a separate
# process): file access, network, process creation, introspection and string-eval gadgets, pickle, threads,
# CPU/memory/fork bombs, endless output, exits, signals. Each has an expected safe outcome, and every case also
# checks that no secret leaked, nothing was written, the call returned in time and the sandbox still works.
# The quick run uses a subset.

# %%
from deepmath_lib.sandbox.redteam import run_redteam

t0 = time.perf_counter()
rt = pd.DataFrame(run_redteam(quick=quick))
print(
    f"{len(rt)} cases in {time.perf_counter() - t0:.1f} s: {int(rt.passed.sum())} passed, {int((~rt.passed).sum())} failed"
)
summary = rt.groupby("category").agg(cases=("name", "count"), passed=("passed", "sum")).reset_index()
summary

# %%
rt[["category", "name", "expect", "outcome", "passed", "detail"]]

# %% [markdown]
# ## Latency against smolagents' LocalPythonExecutor, bare `exec` and a process per snippet
# The same measurement as `deepmath bench sandbox` (fewer repeats when `quick`).

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from deepmath_lib.bench_sandbox import format_table, measure

bench = measure(repeats=5 if quick else 30, slow_repeats=1 if quick else 3)
print(format_table(bench))
lat = pd.DataFrame(
    [{"executor": e, "snippet": k, "ms": v} for e, d in bench["latency_ms"].items() for k, v in d.items()]
)
fig, ax = plt.subplots(figsize=(8, 4))
sns.barplot(data=lat, x="snippet", y="ms", hue="executor", ax=ax)
ax.set_yscale("log")
ax.set_ylabel("median latency (ms, log scale)")
ax.set_title("Snippet latency: our sandbox vs bare exec, smolagents, a process per snippet")
fig.tight_layout()
out = Path(figures_dir)
out.mkdir(parents=True, exist_ok=True)
fig.savefig(out / "sandbox_latency.png", dpi=120)
print("saved", out / "sandbox_latency.png")

# %%
sb.close()
