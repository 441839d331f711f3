"""GRPO rewards on agent trajectories (TRL reward-function signature: lists in, one float or None per completion).

The rollout passes per-episode extras (`pred`, `n_calls_ok`, ...) that TRL forwards as keyword arguments, next to the
dataset's `answer` column.
"""

from __future__ import annotations

import functools
from typing import Any

from .grading import gold_is_parseable, is_equivalent

CODE_REWARD_RULES = ("ran", "called")


def accuracy_reward(completions: list[Any], answer: list[str], pred: list[str | None], **kwargs: Any) -> list:
    """1.0 when the trajectory's boxed answer is equivalent to the gold (math-verify), 0.0 otherwise, and None
    (skipped by TRL) when the gold answer cannot be parsed."""

    out: list[float | None] = []
    for gold, p in zip(answer, pred, strict=True):
        if not gold_is_parseable(str(gold)):
            out.append(None)
        else:
            out.append(1.0 if p is not None and is_equivalent(str(gold), p) else 0.0)
    return out


def code_reward(
    completions: list[Any],
    n_calls_ok: list[int],
    n_calls_formed: list[int] | None = None,
    rule: str = "ran",
    **kwargs: Any,
) -> list[float]:
    """The code-use reward: 1.0 when the trajectory ran at least one snippet without error (`rule="ran"`), or
    made at least one well-formed call, run or not (`rule="called"`: the original's `code_format_reward`, which
    pays for any `<tool_call>...</tool_call>` in the completion)."""
    if rule == "ran":
        return [1.0 if n > 0 else 0.0 for n in n_calls_ok]
    if rule == "called":
        if n_calls_formed is None:
            raise ValueError("the 'called' code reward needs n_calls_formed from the rollout")
        return [1.0 if n > 0 else 0.0 for n in n_calls_formed]
    raise ValueError(f"unknown code reward rule {rule!r}; choose one of {list(CODE_REWARD_RULES)}")


def code_reward_for(rule: str):
    """`code_reward` with its rule fixed (a profile's `code_reward`), still named `code_reward`: TRL names the
    logged metric after the function."""
    if rule not in CODE_REWARD_RULES:
        raise ValueError(f"unknown code reward rule {rule!r}; choose one of {list(CODE_REWARD_RULES)}")

    @functools.wraps(code_reward)
    def reward(completions: list[Any], n_calls_ok: list[int], **kwargs: Any) -> list[float]:
        return code_reward(completions, n_calls_ok, rule=rule, **kwargs)

    return reward
