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
# # 03 · GRPO with agentic rollouts
#
# TRL's `GRPOTrainer` with a `rollout_func` that runs our agent loop: every completion is a trajectory with code
# executed in the sandbox. Executor tokens carry env mask 0 and stay out of the loss. Rewards: accuracy
# (math-verify, weight 0.1) and code use (≥1 successful snippet, weight 1.0). The temperature moves linearly
# 1.2 → 0.7 (over 1,000 steps in the paper; scaled to the run on nano).
#
# Before and after training, the agent answers the same held-out problems with the same sampling.

# %% tags=["parameters"]
profile = "nano"
quick = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
train_steps = None  # None: the profile's setting (quick: 3)
heldout = None  # held-out problems for the before/after check (quick: 32)

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from deepmath_lib.figures import plot_training_curves
from deepmath_lib.grpo import train
from deepmath_lib.profiles import get_profile

if quick:
    train_steps = train_steps or 3
    heldout = heldout or 32
prof = get_profile(profile)
out_dir = Path(work_dir) / prof.name / "grpo"
print(
    f"profile {prof.name}: {train_steps or prof.train_steps} steps, {prof.prompts_per_step} prompts x {prof.num_generations} generations per step"
)

# %%
summary = train(
    prof, steps=train_steps, output_dir=out_dir, results_root=results_root, heldout=heldout, progress=False
)

# %% [markdown]
# ## Training curves

# %%
metrics = pd.read_csv(out_dir / "train_metrics.csv")
path = plot_training_curves(metrics, figures_dir)
display(Image(str(path))) if path else None
metrics.tail().round(3)

# %% [markdown]
# ## Before and after, same held-out problems and sampling

# %%
table = pd.DataFrame(
    {
        "code use rate": [summary["code_use_rate_before"], summary["code_use_rate_after"]],
        "code use 95% CI": [summary["code_use_ci_before"], summary["code_use_ci_after"]],
        "accuracy": [summary["accuracy_before"], summary["accuracy_after"]],
        "accuracy 95% CI": [summary["accuracy_ci_before"], summary["accuracy_ci_after"]],
        "mean model tokens": [summary["mean_model_tokens_before"], summary["mean_model_tokens_after"]],
    },
    index=["warm start", "after GRPO"],
)
table

# %%
print(json.dumps({k: v for k, v in summary.items() if k not in ("before", "after")}, indent=1)[:1500])
assert (out_dir / "final").exists() and summary["steps"] == (train_steps or prof.train_steps)
