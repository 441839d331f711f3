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
# # 04 · Evaluation: the four configurations
#
# | config | weights | tool |
# |---|---|---|
# | baseline | untrained | no (plain chain-of-thought prompt) |
# | agent | untrained | yes (the agent loop) |
# | grpo | GRPO-trained (notebook 03) | no |
# | deepmath | GRPO-trained | yes |
#
# Same sampling for all. maj@k with bootstrap 95% intervals over problems, pass@k (unbiased), mean@k, mean output
# length in model tokens. Samples are appended as they finish; rerunning resumes.

# %% tags=["parameters"]
profile = "nano"
quick = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
samples = None  # None: the profile's setting (quick: 2)
n_problems = None  # None: the profile's setting (quick: 8)

# %%
import shutil
from pathlib import Path

from deepmath_lib.datasets import load_reference
from deepmath_lib.evaluate import evaluate, summary_table
from deepmath_lib.figures import side_by_side
from deepmath_lib.models import trained_weights
from deepmath_lib.profiles import get_profile
from deepmath_lib.results import profile_results_dir

prof = get_profile(profile)
if quick:
    samples = samples or 2
    n_problems = n_problems or 8
    shutil.rmtree(
        profile_results_dir(prof.name, results_root) / "samples", ignore_errors=True
    )  # a fresh quick run
trained = trained_weights(prof, work_dir=work_dir)  # notebook 03's output, else the released weights
print(f"trained model: {trained}")

# %%
summary, curve = evaluate(
    prof,
    samples=samples,
    n_problems=n_problems,
    trained_model=trained,
    results_root=results_root,
    progress=False,
)
summary_table(summary)

# %% [markdown]
# ## maj@k against k (same samples)

# %%
curve.pivot_table(index="k", columns="config", values="maj_at_k").round(3)

# %% [markdown]
# ## Beside the original's reported table
# The original's numbers (maj@16, mean tokens; Qwen3-4B on four benchmarks, no error bars) next to ours. On nano the
# datasets differ: compare the shape (which configuration is most accurate, which is shortest), not the values.

# %%
side_by_side(summary, load_reference())

# %%
assert set(summary.config) == {"baseline", "agent", "grpo", "deepmath"}
assert ((summary.maj_ci_low <= summary.maj_at_k) & (summary.maj_at_k <= summary.maj_ci_high)).all()
