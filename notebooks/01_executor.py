# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The executor: a fast sandbox that actually holds
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmath-nb/deepmath-nb/blob/main/notebooks/01_executor.ipynb)
#
# Part 1 of 5 of a re-implementation of **DeepMath** ([blog post](https://huggingface.co/blog/intel-deepmath),
# [original code](https://github.com/IntelLabs/DeepMath)): a math model that, in the middle of its reasoning,
# writes a few lines of Python, has them executed, and reads the result back before it goes on.
#
# Everything in DeepMath rests on the piece that runs those lines. The blog post asks three things of it: a
# sandbox, an allow-list of importable modules and a timeout per snippet, so that the model's code cannot read or
# write files, reach the network or run for ever. During GRPO training thousands of snippets run, written by a
# model that is being pushed to write more of them, so the executor must also be **fast** and must **keep
# variables** from one snippet to the next (the original's prompt assumes it; its executor did not).
#
# The original used smolagents' `LocalPythonExecutor`, which interprets the Python syntax tree itself: roughly a
# hundred times slower than Python on loops, with a timeout that does not bound wall time, and an allow-list that
# `sympy.sympify` on a string or `numpy.save` walk straight past. Here we use a **process sandbox** instead:
#
# - a *zygote* process, started once, imports and warms sympy, numpy, scipy and mpmath;
# - it forks one *worker per trajectory* (a few milliseconds, the imports already done), which locks itself down
#   once: resource limits (memory, CPU time, no file writes), a seccomp filter (no sockets, no new programs or
#   processes), Landlock (read-only access to the Python installation only), an empty network namespace, an
#   environment emptied of secrets;
# - the wall-clock timeout is enforced from outside by killing the worker; the next snippet finds a fresh worker
#   in which the earlier successful snippets were replayed, so the variables survive.
#
# This notebook tours it: snippets with state, each limit, a red-team run, and the speed against the
# alternatives. It needs no model and runs in about a minute.

# %% [markdown]
# On Colab the next cell installs this project from GitHub (a minute or two); anywhere else it does nothing,
# since `make install` or `pip install` has already done it.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "deepmath-nb @ git+https://github.com/deepmath-nb/deepmath-nb",
        ],
        check=True,
    )

# %% [markdown]
# ## Parameters
# The cell below is tagged `parameters`: papermill (`make demo`, `deepmath pipeline`) replaces these values with
# `configs/<profile>.yaml` and the output folders the pipeline sets. The defaults are the fast settings nbval runs. `quick` runs a subset of the
# red team and fewer timing repeats; `progress` is shared by all five notebooks (nothing here runs long enough to
# need a progress bar).

# %% tags=["parameters"]
profile = "nano"
quick = True
progress = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"

# %% [markdown]
# ## Starting the zygote
# The first call pays the imports (a few seconds); every worker forked afterwards starts warm. The second line
# lists the protection layers that this machine lets a worker switch on. Some hosts forbid a layer (no user
# namespaces in some containers, an old kernel without Landlock): a warning then names what is missing, and the
# remaining layers still stand between the snippet and the host.

# %%
import time
import warnings

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
# One `Sandbox` belongs to one trajectory. `run(code)` returns what the snippet printed, then the value of a bare
# last expression (as a Python prompt would show it: the original's solved examples rely on this), or the last
# lines of the traceback on an error. `model_text()` is exactly the text the model will read inside its
# output block. Look at the second snippet: it uses `roots` and `sp`, defined by the first one. The fourth fails,
# and the model reads the error instead of a value, as it would in a notebook of its own.

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
# Now snippets that a careless or adversarial model could write. The sandbox above was made with a 2 s timeout and
# 512 MB of memory. What to look for in the table:
#
# - **timeout**: an endless loop is killed after 2 s (`timed_out` is True), and the very next snippet, **state
#   after timeout**, still sees `f` and `roots`: the new worker replayed the earlier snippets;
# - **memory**: a 2 GB allocation fails with `MemoryError` instead of taking the host down;
# - **refused import**: `subprocess` is not on the allow-list;
# - **file write / file read**: numpy can write files, so the allow-list alone would not stop it; the OS layers do;
# - **network / process**: the last two first climb out of the allow-list on purpose (through Python's object
#   graph, a classic escape), then try to open a socket or run a shell command. The OS layers are what must
#   hold, and they do.

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
# A longer list of hostile snippets lives in `deepmath_lib.sandbox.redteam` (the test suite `tests/redteam` runs
# the same cases): reading and writing files, the network, starting processes, introspection and string-evaluation
# gadgets (the kind that broke the original's executor), pickle, threads, CPU, memory and fork bombs, endless
# output, `exit`, signals. Each case states the safe outcome it expects. On top of that every case checks that
# no secret from the host's environment leaked, nothing was written, the call came back in time and the sandbox
# still answers afterwards. The quick run takes a subset; set `quick = False` for all of them.
#
# What to look for: `failed` should be 0, and the summary shows which categories were attacked.

# %%
from deepmath_lib.sandbox.redteam import run_redteam

t0 = time.perf_counter()
rt = pd.DataFrame(run_redteam(quick=quick))
print(
    f"{len(rt)} cases in {time.perf_counter() - t0:.1f} s: {int(rt.passed.sum())} passed, {int((~rt.passed).sum())} failed"
)
summary = rt.groupby("category").agg(cases=("name", "count"), passed=("passed", "sum")).reset_index()
summary

# %% [markdown]
# Every case, with what it expected and what happened (`detail` holds the last line the snippet produced, or what
# went wrong):

# %%
rt[["category", "name", "expect", "outcome", "passed", "detail"]]

# %% [markdown]
# ## Latency against smolagents' LocalPythonExecutor, bare `exec` and a process per snippet
# Safety must not cost speed: a training run executes a snippet in nearly every trajectory. This cell times a few
# typical snippets in four executors: bare `exec` (fast, no protection at all), our sandbox, smolagents' AST
# interpreter (what the original used) and a brand-new Python process per snippet. It is the same measurement as
# `deepmath bench sandbox` (fewer repeats when `quick`), drawn by the function that `deepmath figures` uses.
#
# What to look for: on the loop, the sandbox runs at bare-`exec` speed while the AST interpreter is about a hundred
# times slower; on `sympy.solve`, a fresh process pays the sympy import every time, which the zygote paid once.

# %%
from IPython.display import Image, display

from deepmath_lib.bench.sandbox import format_table, measure
from deepmath_lib.plots import plot_sandbox_latency

bench = measure(quick=quick)
print(format_table(bench))
path = plot_sandbox_latency(bench, figures_dir)
display(Image(filename=str(path)))
lat = bench["latency_ms"]
assert lat["sandbox"]["loop_1e5"] < lat["smolagents"]["loop_1e5"] / 10, (
    "the sandbox should run loops natively"
)

# %%
sb.close()

# %% [markdown]
# ## Try this
# Each exercise changes one line; rerun from the cell you changed.
#
# 1. **Replay the original's escape.** Add
#    `"sympify": "import sympy\nsympy.sympify(\"__import__('os').system('id')\")"` to `demos`. sympy's parser
#    really does evaluate the string (that is how it escaped the original's allow-list), but the shell cannot
#    start: the model reads a non-zero exit status and no `uid=...` line.
# 2. **A tighter clock.** Run `"sum(k * k for k in range(3 * 10**6))"` in `sb` (it returns in well under its
#    2 s), then in a second sandbox made with `Sandbox(timeout=0.2)`: there `timed_out` becomes True after about
#    0.2 s. The original gave each snippet 20 s; a short limit trades hard computations for faster training steps.
# 3. **Less to read.** Recreate `sb` with `max_output_chars=50` and print `'x' * 1000`: the model reads the start
#    and the end of the output and a marker saying how many characters were left out. Output is cut so one
#    snippet cannot flood the model's context (and its token budget).
# 4. **The whole red team.** Set `quick = False` in the parameters cell and rerun: about four times as many
#    cases (still a matter of seconds), and the timing cell repeats each snippet 30 times for steadier medians.
#    Still 0 failed.
