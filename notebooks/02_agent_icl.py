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
# # 02 · The agent with in-context learning
#
# The model reasons in text and, when a step needs computing, writes a short Python snippet in a call block.
# The sandbox (notebook 01) runs it; its output comes back in an `output` block, masked as environment tokens;
# the model continues until it writes `\boxed{answer}`. Many trajectories run at once, batched on one model.
#
# Defaults are the fast `nano` settings; `papermill -p profile smol` runs the real pretrained SmolLM2-135M.

# %% tags=["parameters"]
profile = "nano"
quick = True
results_root = "../runs/nbval/results"
figures_dir = "../runs/nbval/figures"
work_dir = "../runs/nbval"
n_problems = 6
seed = 0

# %%
import pandas as pd
from IPython.display import HTML, display

from deepmath_lib.agent import trace_html
from deepmath_lib.backends import make_backend
from deepmath_lib.evaluate import tool_vs_no_tool
from deepmath_lib.profiles import get_profile
from deepmath_lib.prompts import build_messages

prof = get_profile(profile)
backend = make_backend(prof)
print(
    f"profile {prof.name}: model {prof.model}, call format {prof.call_open.strip()!r} ... {prof.call_close!r}"
)

# %% [markdown]
# ## The prompt
# The agent prompt (system instruction + solved examples in the call format; the nano model learned the format
# in its warm-start, so its prompt is the bare problem) and the plain chain-of-thought prompt of the baseline.

# %%
problem = "What is 4821*37?"
for tool in (True, False):
    msgs = build_messages(problem, prof, tool=tool)
    text = backend.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    print(("AGENT" if tool else "NO TOOL") + f" prompt ({len(text)} chars):\n" + text[-600:] + "\n")

# %% [markdown]
# ## The agent on a handful of problems, and the same problems without the tool

# %%
from deepmath_lib.datasets import load_problems

problems = (
    load_problems("nano", n=n_problems)
    if prof.eval_datasets == ("nano",)
    else load_problems(prof.eval_datasets[0], n=n_problems)
)
table, with_tool, without = tool_vs_no_tool(backend, prof, problems, seed=seed)
for traj, p in zip(with_tool, problems):
    display(HTML(trace_html(traj, prof, gold=str(p["answer"]))))

# %%
side = table.pivot_table(index="mode", values=["correct", "model_tokens", "calls"], aggfunc="mean").round(2)
side

# %%
display(HTML("<b>Without the tool</b> (the same problems, plain chain-of-thought prompt):"))
for traj, p in zip(without[:3], problems[:3]):
    display(HTML(trace_html(traj, prof, gold=str(p["answer"]))))

# %% [markdown]
# ## A smolagents CodeAgent on our sandbox
# For interactive use: smolagents' `CodeAgent` with our instruction, our backend as its model and our Sandbox as
# its executor (not smolagents' AST interpreter). Small models rarely follow the CodeAgent format; the run still
# shows the plumbing end to end.

# %%
from deepmath_lib.smolagent import make_code_agent

agent = make_code_agent(backend, prof, max_steps=2, verbosity_level=0)
result = agent.run("What is 123*457?")
print("CodeAgent answer:", str(result)[:200])
print("steps:", len(agent.memory.steps))

# %%
assert len(with_tool) == len(problems) and all(
    t.finish_reason in ("answer", "eos", "budget", "calls", "error") for t in with_tool
)
