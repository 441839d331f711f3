"""How a model behaves in the agent loop on nano problems: how often it calls the tool, and whether calling pays.

Runs the project's own loop (`agent.run_agent`, snippets in the sandbox) and grades with `grading.is_equivalent`,
so the numbers are the ones GRPO and the evaluation will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..agent import run_agent
from ..trace import trajectory_stats


def summarize_tool_use(problems: Sequence[dict], trajectories: Sequence[Any]) -> dict:
    """Code-use rate, accuracy, and accuracy and mean model tokens of the trajectories with at least one call
    (`tool_*`) and with none (`hand_*`): `trace.trajectory_stats` with the golds of `problems` (dicts with
    `answer`, one per trajectory, in order)."""
    return trajectory_stats([p["answer"] for p in problems], trajectories)


def measure(backend, profile, problems: Sequence[dict], sampling=None, seed: int = 0) -> dict:
    """Run `problems` (dicts `problem, answer`) once each through the agent loop with the agent prompt, on
    `backend` (from `backends.make_backend`) and `profile`, with `sampling` (default: the profile's
    `eval_sampling`), and return `summarize_tool_use` of the trajectories."""
    trajectories = run_agent(
        backend,
        [p["problem"] for p in problems],
        profile,
        tool=True,
        sampling=sampling or profile.eval_sampling,
        seed=seed,
    )
    return summarize_tool_use(problems, trajectories)
