"""Renderers of traces for people: HTML for notebooks (a trace, a completion's env mask) and rich text for the
terminal. They read a trace only through `trace` (its parts and its boxed answers)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .grading import is_equivalent
from .profiles import Profile
from .trace import box_pieces, trace_parts

_BOX_HTML = '<b style="background:#fff3b0;padding:0 3px">{}</b>'


def trace_html(traj: Any, profile: Profile, gold: str | None = None) -> str:
    """An HTML rendering of a trajectory (`agent.Trajectory`) for notebooks: code, output and the boxed answer
    highlighted."""
    styles = {
        "text": "color:#222",
        "code": "background:#eef4ff;color:#1f3b8f;display:block;padding:2px 6px;border-left:3px solid #4a6fd8",
        "output": "background:#f2fbef;color:#236b13;display:block;padding:2px 6px;border-left:3px solid #3a9a23",
    }
    body = []
    for kind, part in trace_parts(traj.text, profile):
        if kind == "text":
            esc = "".join(
                _BOX_HTML.format(html.escape(p)) if box else html.escape(p) for box, p in box_pieces(part)
            )
        else:
            esc = html.escape(part)
        body.append(f'<span style="{styles[kind]}">{esc}</span>')
    verdict = ""
    if gold is not None:
        ok = is_equivalent(gold, traj.answer)
        verdict = f" &middot; gold {html.escape(gold)} &middot; {'correct' if ok else 'wrong'}"
    head = (
        f"<div style='font:12px sans-serif;color:#555'>{html.escape(traj.problem)} &middot; finish: "
        f"{traj.finish_reason} &middot; calls: {len(traj.calls)} &middot; model tokens: {traj.model_tokens}"
        f"{verdict}</div>"
    )
    return f"<div style='border:1px solid #ddd;margin:6px 0;padding:6px'>{head}<pre style='white-space:pre-wrap;margin:0'>{''.join(body)}</pre></div>"


def env_mask_html(tokenizer, ids: Sequence[int], mask: Sequence[int]) -> str:
    """An HTML strip of a completion's tokens coloured by the env mask, for notebooks: model tokens (mask 1, the
    ones GRPO's loss sees) in blue, executor tokens (mask 0, context only) in orange. Neighbouring tokens alternate
    two shades so each token's extent shows; hovering gives the kind and the token id. A legend counts both kinds.
    Raises ValueError when `ids` and `mask` differ in length."""
    if len(ids) != len(mask):
        raise ValueError(f"{len(ids)} token ids but {len(mask)} mask values")
    shades = {"model": ("#d4e2ff", "#b3ccff"), "executor": ("#ffe0b8", "#ffc98a")}
    spans = []
    for i, (tid, m) in enumerate(zip(ids, mask, strict=True)):
        kind = "model" if m else "executor"
        piece = html.escape(tokenizer.decode([tid], skip_special_tokens=False)).replace("\n", "↵\n")
        spans.append(
            f'<span style="background:{shades[kind][i % 2]}" title="{kind} token {tid}">{piece}</span>'
        )
    n_model = sum(1 for m in mask if m)
    legend = (
        "<div style='font:12px sans-serif;color:#555;margin-bottom:4px'>"
        f"<span style='background:{shades['model'][0]};padding:0 4px'>model tokens: {n_model}</span> in the loss "
        f"&middot; <span style='background:{shades['executor'][0]};padding:0 4px'>executor tokens: "
        f"{len(mask) - n_model}</span> masked out</div>"
    )
    return (
        f"<div style='border:1px solid #ddd;margin:6px 0;padding:6px'>{legend}"
        f"<pre style='white-space:pre-wrap;margin:0'>{''.join(spans)}</pre></div>"
    )


def print_trace(traj: Any, profile: Profile, console=None) -> None:
    """Print a trajectory (`agent.Trajectory`) to the terminal with rich: code blue, executor output green, the
    boxed answer highlighted."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(highlight=False)
    styles = {"text": "", "code": "bold blue", "output": "green"}
    out = Text()
    for kind, part in trace_parts(traj.text, profile):
        if kind == "text":
            for box, piece in box_pieces(part):
                out.append(piece, style="bold black on yellow" if box else "")
        else:
            out.append(part, style=styles[kind])
    console.print(out)
    console.print(
        f"[dim]finish: {traj.finish_reason} | calls: {len(traj.calls)} ({traj.n_calls_ok} ok) | "
        f"model tokens: {traj.model_tokens} | total tokens: {traj.total_tokens}[/dim]"
    )
