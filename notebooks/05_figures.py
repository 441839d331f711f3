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
# # 05 · Figures
#
# The evaluation (notebook 04) left `eval_summary.csv` and the per-sample records under
# `<results_root>/<profile>/`. This notebook draws the figures from them with `deepmath_lib.figures` (the same code
# as `deepmath figures`) and puts our table beside the one the original DeepMath blog post reported.
#
# - **accuracy** — maj@k per dataset and configuration, with 95% bootstrap intervals over problems;
# - **output length** and **length reduction** against the baseline — the agent should shorten outputs;
# - **accuracy against length** — up-left is better;
# - **maj@k against k** — how much voting over more samples helps;
# - **tool calls per trajectory** and an **example trace** (code, executor output, boxed answer);
# - **the original's table beside ours** (on `nano` the datasets differ: compare the shape, not the numbers);
# - **training curves** when the GRPO run (notebook 03) logged `train_metrics.csv`.

# %% tags=["parameters"]
profile = "nano"
quick = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from deepmath_lib import figures
from deepmath_lib.datasets import load_reference
from deepmath_lib.paths import REPO_ROOT

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)

# Read from results_root; when notebook 04 has not written there (e.g. this notebook run on its own), fall back to
# the committed results, for reading only. Figures always go to figures_dir.
read_root = Path(results_root)
if not (read_root / profile / "eval_summary.csv").is_file():
    committed = REPO_ROOT / "data" / "results"
    if (committed / profile / "eval_summary.csv").is_file():
        print(
            f"no eval summary in {read_root / profile}; reading the committed results in {committed / profile}"
        )
        read_root = committed
    else:
        print(
            f"note: no eval_summary.csv in {read_root / profile} nor in {committed / profile}: run notebook 04 "
            f"(or `deepmath eval --profile {profile}`) first. Only the original's table is shown below."
        )
        read_root = None
print("reading:", read_root / profile if read_root else None, "| writing figures to:", Path(figures_dir))

# %% [markdown]
# ## The table: ours beside the original's
#
# Ours is the headline row (largest k) per dataset and configuration; the original reported maj@16 and the mean
# output length in tokens, without intervals.

# %%
reference = load_reference()
summary = pd.read_csv(read_root / profile / "eval_summary.csv") if read_root else pd.DataFrame()
if not summary.empty:
    cols = ["dataset", "config", "k", "maj_at_k", "maj_ci_low", "maj_ci_high", "pass_at_k", "mean_at_k"]
    cols += ["mean_len_model_tokens", "mean_len_total_tokens", "n_problems"]
    cols += [c for c in ("mean_calls", "code_use_rate", "truncation_rate") if c in summary.columns]
    display(figures.headline(summary)[cols].round(3))
display(figures.side_by_side(summary, reference))

# %% [markdown]
# ## The figures

# %%
if read_root is not None:
    saved = figures.make_all_figures(profile, read_root, figures_dir)
else:
    saved = [figures.plot_reference_comparison(pd.DataFrame(), reference, figures_dir)]
print(f"{len(saved)} figure(s) in {Path(figures_dir)}:")
for path in saved:
    print(" ", path.name)
for path in saved:
    display(Image(filename=str(path)))
