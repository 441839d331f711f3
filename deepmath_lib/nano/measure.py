"""How a model behaves in the agent loop on nano problems: how often it calls the tool, and whether calling pays.

Runs the project's own loop (`agent.run_agent`, snippets in the sandbox) and grades with `grading.is_equivalent`,
so the numbers are the ones GRPO and the evaluation will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def summarize_tool_use(problems: Sequence[dict], trajectories: Sequence[Any]) -> dict:
    """Code-use rate, accuracy, and accuracy and mean model tokens of the trajectories with at least one call
    (`tool_*`) and with none (`hand_*`). `problems` are dicts with `answer`, one per trajectory, in order.
    A group with no trajectories has None for its accuracy and mean tokens."""
    from ..grading import is_equivalent

    rows = [
        (len(t.calls) > 0, is_equivalent(str(p["answer"]), t.answer), t.model_tokens)
        for p, t in zip(problems, trajectories, strict=True)
    ]
    tool = [r for r in rows if r[0]]
    hand = [r for r in rows if not r[0]]

    def accuracy(group):
        return round(sum(r[1] for r in group) / len(group), 3) if group else None

    def mean_tokens(group):
        return round(sum(r[2] for r in group) / len(group), 1) if group else None

    return {
        "n": len(rows),
        "code_use_rate": round(len(tool) / max(len(rows), 1), 3),
        "accuracy": accuracy(rows),
        "tool_n": len(tool),
        "tool_accuracy": accuracy(tool),
        "hand_accuracy": accuracy(hand),
        "tool_mean_tokens": mean_tokens(tool),
        "hand_mean_tokens": mean_tokens(hand),
    }


def measure(backend, profile, problems: Sequence[dict], sampling=None, seed: int = 0) -> dict:
    """Run `problems` (dicts `problem, answer`) once each through the agent loop with the agent prompt, on
    `backend` (from `backends.make_backend`) and `profile`, with `sampling` (default: the profile's
    `eval_sampling`), and return `summarize_tool_use` of the trajectories."""
    from ..agent import run_agent

    trajectories = run_agent(
        backend,
        [p["problem"] for p in problems],
        profile,
        tool=True,
        sampling=sampling or profile.eval_sampling,
        seed=seed,
    )
    return summarize_tool_use(problems, trajectories)
