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
# # 04 · Evaluation: the four configurations
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmath-nb/deepmath-nb/blob/main/notebooks/04_eval.ipynb)
#
# Part 4 of 5 of a re-implementation of **DeepMath** ([blog post](https://huggingface.co/blog/intel-deepmath),
# [original code](https://github.com/IntelLabs/DeepMath)). Notebook 03 trained the model; this one measures what
# the training and the tool each contribute.
#
# The blog separates the two ingredients with a 2 × 2 design. The two ablations are independent, not steps on a
# ladder: *+Agent* adds the tool to the untrained model, *+GRPO* runs the trained model without the tool.
#
# | config | weights | tool |
# |---|---|---|
# | baseline | untrained | no (plain chain-of-thought prompt) |
# | agent | untrained | yes (the agent loop) |
# | grpo | GRPO-trained (notebook 03) | no |
# | deepmath | GRPO-trained | yes |
#
# Every configuration gets the same problems and the same sampling (the original's: temperature 0.6, top-p 0.95,
# top-k 20). The metrics:
#
# - **maj@k**: sample k answers per problem, take the most common one, score it. The original reports maj@16;
#   we add a 95% bootstrap interval over problems, which the original does not give;
# - **pass@k** (at least one of k samples right, unbiased estimator) and **mean@k** (the average sample);
# - **mean output length**: the model's own tokens, and all tokens including executor output (the original's
#   length figures count everything).
#
# Samples are appended to a JSONL store as they finish, so an interrupted evaluation resumes where it stopped.

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
# Tagged `parameters` for papermill. `samples` (k) and `n_problems` left at `None` keep the profile's values (its
# quick values when `quick`: 2 samples of 8 problems on nano); `progress` shows a bar per configuration; `backend`
# (`transformers` or `vllm`) replaces the profile's generation backend, `None` keeps it.

# %% tags=["parameters"]
profile = "nano"
quick = True
progress = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
samples = None  # None: the profile's setting (its quick setting when quick)
n_problems = None  # None: the profile's setting
backend = None  # None: the profile's backend

# %% [markdown]
# ## Which weights
# The +GRPO and DeepMath rows need trained weights: those notebook 03 saved under `work_dir` if it ran, else the
# profile's released weights (for nano, a GRPO run shipped inside the package; for the paper profile, Intel's
# `Intel/deepmath-v1` adapter). The quick run starts from an empty sample store so that it really generates.

# %%
import shutil
from pathlib import Path

from deepmath_lib.datasets import load_reference
from deepmath_lib.evaluate import evaluate
from deepmath_lib.models import trained_model_path
from deepmath_lib.profiles import get_profile
from deepmath_lib.results import profile_results_dir
from deepmath_lib.tables import side_by_side, summary_table

prof = get_profile(profile, quick=quick, eval_samples=samples, eval_n_problems=n_problems, backend=backend)
if quick:  # a fresh run each time, so nbval exercises generation rather than resuming
    shutil.rmtree(profile_results_dir(prof.name, results_root) / "samples", ignore_errors=True)
print("trained model:", trained_model_path(prof, work_dir))  # notebook 03's output
print("sampling:", prof.eval_sampling)

# %% [markdown]
# ## Run the four configurations
# The base model runs Baseline and +Agent, then the trained model runs +GRPO and DeepMath. The table has one row
# per dataset, configuration and k. What to look for: the tool configurations (agent, deepmath) should be
# shorter and, on problems that need computing, more accurate. Whether a difference between two rows is larger
# than the noise is a question for the paired comparisons further down, not for two intervals side by side.

# %%
summary, curve = evaluate(prof, work_dir=work_dir, results_root=results_root, progress=progress)
summary_table(summary)

# %% [markdown]
# ## maj@k against k (same samples)
# Majority voting over more samples usually helps until the answers agree. With the quick defaults k only goes up
# to 2; the original used 16.

# %%
curve.pivot_table(index="k", columns="config", values="maj_at_k").round(3)

# %% [markdown]
# ## Beside the original's reported table
# The original's numbers (maj@16 and mean output tokens of Qwen3-4B-Thinking on MATH-500, AIME 2025, HMMT
# February 2025 and HLE, without error bars) next to ours. There, the agent alone cut lengths by up to 66%, and
# the trained agent (DeepMath) was the most accurate almost everywhere. On nano the datasets differ, so compare the
# shape (which configuration is most accurate, which is shortest), not the values.

# %%
side_by_side(summary, load_reference())

# %%
assert set(summary.config) == {"baseline", "agent", "grpo", "deepmath"}
assert ((summary.maj_ci_low <= summary.maj_at_k) & (summary.maj_at_k <= summary.maj_ci_high)).all()

# %% [markdown]
# ## Paired comparisons: the same problems, problem by problem
# Every configuration ran on the same problems, so two of them are compared on their per-problem differences: the
# easy problems that both solve cancel out, which two separate intervals side by side ignore. `evaluate` wrote
# these comparisons to `comparisons.csv` beside the summary, one row per dataset and pair (first minus second):
# the accuracy difference with a paired 95% bootstrap interval, how many problems only one side got right, an exact
# McNemar p-value (and for mean@k a sign-flip permutation p-value), Holm-adjusted over the table's comparisons,
# and the differences in model and total tokens. What to look for: an interval that excludes 0 with a small p.

# %%
from IPython.display import Image, display

from deepmath_lib.evaluate import load_comparisons
from deepmath_lib.plots import plot_comparisons
from deepmath_lib.tables import paired_table

comparisons = load_comparisons(prof.name, results_root)
display(paired_table(comparisons))
Image(plot_comparisons(comparisons, figures_dir))

# %%
assert len(comparisons) == 4 * summary.dataset.nunique()
assert comparisons.maj_p.between(0, 1).all() and (comparisons.maj_p_holm >= comparisons.maj_p).all()

# %% [markdown]
# ## Try this
#
# 1. **More votes.** Set `samples = 8` in the parameters cell: maj@k is now computed up to k = 8, and the maj@k
#    table shows how far voting carries. About four times the generation time of the quick run.
# 2. **More problems, narrower intervals.** Set `n_problems = 60` (nano's full evaluation set): the 95%
#    intervals shrink roughly with the square root of the number of problems, and differences between
#    configurations become readable.
# 3. **A 60-step model.** Call `evaluate(prof, trained_model=prof.released_weights, ...)`: the +GRPO and DeepMath
#    rows then use the GRPO run shipped with the package (the full nano recipe of `make demo`) instead of
#    notebook 03's few quick steps.
# 4. **A tight budget.** Add `eval_sampling=Sampling(temperature=0.6, top_p=0.95, top_k=20, max_model_tokens=48)`
#    to `get_profile(...)` (import `Sampling` from `deepmath_lib.profiles`): many trajectories stop at the budget
#    before answering. See which configurations lose the most: the ones that must spell out every computation in
#    text, or the ones that hand it to the executor.
# 5. **A real model.** `profile = "smol"` with `samples = 1` (it evaluates greedily, so more samples would be
#    identical): SmolLM2-135M in the same four configurations.
