"""GRPO rewards on agent trajectories (TRL reward-function signature: lists in, one float or None per completion).

The rollout passes per-episode extras (`pred`, `n_calls_ok`, ...) that TRL forwards as keyword arguments, next to the
dataset's `answer` column.
"""

from __future__ import annotations

from typing import Any


def accuracy_reward(completions: list[Any], answer: list[str], pred: list[str | None], **kwargs: Any) -> list:
    """1.0 when the trajectory's boxed answer is equivalent to the gold (math-verify), 0.0 otherwise, and None
    (skipped by TRL) when the gold answer cannot be parsed."""
    from .grading import gold_is_parseable, is_equivalent

    out: list[float | None] = []
    for gold, p in zip(answer, pred, strict=True):
        if not gold_is_parseable(str(gold)):
            out.append(None)
        else:
            out.append(1.0 if p is not None and is_equivalent(str(gold), p) else 0.0)
    return out


def code_reward(completions: list[Any], n_calls_ok: list[int], **kwargs: Any) -> list[float]:
    """1.0 when the trajectory ran at least one snippet successfully (DeepMath's code-use reward)."""
    return [1.0 if n > 0 else 0.0 for n in n_calls_ok]
