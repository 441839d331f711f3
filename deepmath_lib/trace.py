"""The trace format: how a trajectory's text is laid out, and the one place that reads it.

A trace is the model's prose with tool calls in it: a call is ``profile.call_open`` … ``profile.call_close`` (the
nano/paper tags, or smolagents' fences), and the executor's reply follows it as ``profile.output_template`` around
the output. This module holds what every reader of a trace needs: the stop that ends a call, the code of a call,
the parts of a trace (prose, code, output), the answer taken from the model's own prose (never from code or
executor output), the brace-aware spans of ``\\boxed{}`` answers for highlighting, and the statistics of a set
of trajectories (code use, accuracy, mean tokens). The agent loop, the grader's regrading, the renderers (notebook
HTML, terminal, Space, figure) and the tool-use summaries all use these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backends import Stop
from .grading import box_spans, extract_answer, is_equivalent
from .profiles import Profile


def call_stop(tokenizer, profile: Profile) -> Stop:
    """Stop on the close tag's token id when the tokenizer has it as one token (Qwen3, nano), else on the pair."""
    close = profile.call_close
    if close in tokenizer.get_added_vocab():
        return Stop(token_ids=(tokenizer.convert_tokens_to_ids(close),))
    return Stop(pairs=((profile.call_open.strip() or profile.call_open, close),))


def extract_code(segment: str, profile: Profile) -> str | None:
    """The code of the last call in a generated segment that ends with the close tag (None if no open tag)."""
    open_tag = profile.call_open.strip()
    end = segment.rfind(profile.call_close)
    if end < 0:
        return None
    start = segment.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return segment[start + len(open_tag) : end].strip("\n")


def trace_parts(text: str, profile: Profile) -> list[tuple[str, str]]:
    """Split a trajectory's text into ``(kind, part)`` segments, in order; kind is "text" (the model's prose),
    "code" (``profile.call_open`` … ``profile.call_close``) or "output" (an executor block, ``profile.output_template``
    around the output). A call or block left open runs to the end. The parts joined give the text back."""
    open_tag, close = profile.call_open.strip(), profile.call_close
    out_open, out_close = profile.output_template.split("{output}")
    parts: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        code_at, output_at = text.find(open_tag, pos), text.find(out_open, pos)
        found = sorted((i, kind) for i, kind in ((code_at, "code"), (output_at, "output")) if i >= 0)
        if not found:
            parts.append(("text", text[pos:]))
            break
        start, kind = found[0]
        if start > pos:
            parts.append(("text", text[pos:start]))
        if kind == "code":
            body, end_tag = start + len(open_tag), close
        else:
            body, end_tag = start + len(out_open), out_close
        end = text.find(end_tag, body)
        end = len(text) if end < 0 else end + len(end_tag)
        parts.append((kind, text[start:end]))
        pos = end
    return parts


def prose(text: str, profile: Profile) -> str:
    """The model's own prose in a trace: the text parts joined, code and executor output left out."""
    return "".join(part for kind, part in trace_parts(text, profile) if kind == "text")


def prose_answer(text: str, profile: Profile) -> str | None:
    """The answer of a trace, read (`grading.extract_answer`) from the model's prose only: neither code nor executor
    output can supply it."""
    return extract_answer(prose(text, profile))


def box_pieces(text: str) -> list[tuple[bool, str]]:
    """``text`` cut into ``(is_box, piece)`` pieces, in order, each outermost ``\\boxed{...}`` (nested braces
    included, `grading.box_spans`) one piece marked True, for renderers that highlight the answer."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for start, end in box_spans(text):
        if start > pos:
            pieces.append((False, text[pos:start]))
        pieces.append((True, text[start:end]))
        pos = end
    if pos < len(text):
        pieces.append((False, text[pos:]))
    return pieces


def trajectory_outcomes(golds: Sequence[Any], trajectories: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per trajectory (one gold each, in order): the gold and answer, whether it is right
    (`grading.is_equivalent`), its calls (all, and those that ran), its model and total tokens and how it ended."""
    return [
        {
            "gold": str(g),
            "pred": t.answer,
            "correct": is_equivalent(str(g), t.answer),
            "calls": len(t.calls),
            "calls_ok": t.n_calls_ok,
            "model_tokens": t.model_tokens,
            "total_tokens": t.total_tokens,
            "finish": t.finish_reason,
        }
        for g, t in zip(golds, trajectories, strict=True)
    ]


def trajectory_stats(golds: Sequence[Any], trajectories: Sequence[Any]) -> dict:
    """Code use, accuracy and mean model tokens of a set of trajectories, one gold per trajectory, in order: over
    all of them, and over those with at least one call (`tool_*`) and with none (`hand_*`). A group with no
    trajectories has None for its accuracy and mean tokens."""
    rows = [
        (o["calls"] > 0, o["correct"], o["model_tokens"]) for o in trajectory_outcomes(golds, trajectories)
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
