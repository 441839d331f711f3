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
# # 05 · Figures
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmath-nb/deepmath-nb/blob/main/notebooks/05_figures.ipynb)
#
# Part 5 of 5 of a re-implementation of **DeepMath** ([blog post](https://huggingface.co/blog/intel-deepmath),
# [original code](https://github.com/IntelLabs/DeepMath)). The evaluation (notebook 04) left `eval_summary.csv`
# and the per-sample records under `<results_root>/<profile>/`; this notebook turns them into tables and figures.
# It runs no model, only reads results.
#
# The figures, all drawn by `deepmath_lib.plots` (the same code as `deepmath figures`):
#
# - **accuracy**: maj@k per dataset and configuration, with 95% bootstrap intervals over problems;
# - **output length** and **length reduction** against the baseline: the blog's headline is that the agent
#   shortens outputs (by up to 66% on its benchmarks);
# - **accuracy against length**: up and to the left is better;
# - **maj@k against k**: how much voting over more samples helps;
# - **tool calls per trajectory** and an **example trace** (code, executor output, boxed answer);
# - **the original's table beside ours** (on `nano` the datasets differ: compare the shape, not the numbers);
# - **training curves** when the GRPO run (notebook 03) logged `train_metrics.csv`;
# - **sandbox latency** when `deepmath bench sandbox` stored `<results_root>/bench/sandbox.json` (notebook 01
#   measures it live).
#
# By default it reads what notebook 04 wrote at its own defaults (`../runs/nbval/results`), so run notebook 04
# first in the same environment; `make demo` points it at the full run's results instead.

# %% [markdown]
# On Colab the next cell installs this project from GitHub (a minute or two); anywhere else it does nothing.

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
# Tagged `parameters` for papermill. Figures are written to `figures_dir`; results are only read from
# `results_root`. `progress` is shared by all five notebooks (nothing here runs long enough to need a bar).

# %% tags=["parameters"]
profile = "nano"
quick = True
progress = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from deepmath_lib import plots, tables
from deepmath_lib.datasets import load_reference
from deepmath_lib.results import eval_summary_path

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)

summary = pd.read_csv(eval_summary_path(profile, results_root))
reference = load_reference()
print(f"{len(summary)} rows from {eval_summary_path(profile, results_root)}")

# %% [markdown]
# ## The table: ours beside the original's
#
# Ours is the headline row (the largest k) per dataset and configuration. The original reported maj@16 and the
# mean output length in tokens, without intervals. What to look for: whether DeepMath (trained, with the tool) is
# the most accurate row and the tool rows are the shortest, as in the original.

# %%
tables.summary_table(tables.headline(summary))

# %%
tables.side_by_side(summary, reference)

# %% [markdown]
# ## The figures
# Each figure is saved as a PNG in `figures_dir` and shown below. A figure whose inputs are missing (no training
# log, no stored benchmark) is skipped; the two asserted at the end need only the evaluation summary.

# %%
saved = plots.make_all_figures(profile, results_root, figures_dir)
print(f"{len(saved)} figure(s) in {Path(figures_dir)}:")
for path in saved:
    print(" ", path.name)
for path in saved:
    display(Image(filename=str(path)))
assert {"accuracy.png", "original_vs_ours.png"} <= {path.name for path in saved}

# %% [markdown]
# ## Try this
#
# 1. **The full nano run.** In a clone of the repository, set `results_root = "../data/results"`: the committed
#    results of `make demo` (60 GRPO steps, 8 samples of 60 problems), with training curves and the sandbox
#    benchmark, so every figure appears and the intervals are narrower.
# 2. **The length reduction as numbers.** Add a cell with `tables.length_reduction(summary)`: how much shorter
#    each configuration is than the baseline, to set beside the blog's "up to 66%".
# 3. **One figure on its own.** `plots.plot_accuracy_vs_length(summary, figures_dir)` redraws a single figure
#    (every `plot_*` function takes a summary or a curve and a folder, and returns the saved path), handy after
#    editing its code in `deepmath_lib/plots.py`.
# 4. **Another profile.** After running notebook 04 with `profile = "smol"`, set `profile = "smol"` here: the same
#    figures for SmolLM2-135M.
