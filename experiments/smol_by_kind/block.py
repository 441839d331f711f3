"""The smol page's table per problem kind: what the untrained model reaches when it samples (experiments/smol_reach)
beside greedy accuracy before and after GRPO (this experiment) and after GRPO with more samples per problem
(experiments/smol_more_samples)."""

from __future__ import annotations

import json

from deepmath_lib.fingerprints import engine_fingerprint
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir


def _min_s(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def render() -> str:
    reach = json.loads((results_dir("smol_reach") / "val_reach.json").read_text())
    by_kind = json.loads((results_dir("smol_by_kind") / "val_by_kind.json").read_text())
    greedy = dict(by_kind)
    runs = [w for w in greedy if isinstance(greedy[w], dict) and "by_kind" in greedy[w]]
    labels = {w: w for w in runs}
    more = results_dir("smol_more_samples")
    extra = more_rec = None
    if (more / "val_by_kind.json").exists() and (more / "train_summary.json").exists():
        extra = json.loads((more / "train_summary.json").read_text())
        more_rec = json.loads((more / "val_by_kind.json").read_text())
        greedy["more"] = more_rec["after"]
        runs.append("more")
        labels["more"] = f"after GRPO with {extra['num_generations']} per problem"
    samp = reach["sampling"]
    head = (
        f"| kind | problems | untrained, sampled: correct samples | solved by any of {reach['samples']} | "
        + " | ".join(f"greedy, {labels[w]}: correct (code)" for w in runs)
        + " |"
    )
    lines = [
        f"Validation problems ({greedy['problems']}; neither training nor held-out), {reach['n']} problems. Sampled: "
        f"the untrained model, {reach['samples']} samples per problem at T {samp['temperature']} / top_p "
        f"{samp['top_p']} / top_k {samp['top_k']}, {samp['max_model_tokens']} tokens. Greedy: the held-out "
        "check's sampling, before and after GRPO (and any checkpoints `smol_by_kind --also` checked).",
        "",
        head,
        "|---" * (4 + len(runs)) + "|",
    ]
    for kind, k in reach["by_kind"].items():
        cells = []
        for w in runs:
            g = greedy[w]["by_kind"].get(kind, {"n": 0, "correct": 0, "code": 0})
            cells.append(f"{g['correct']}/{g['n']} ({g['code']})")
        lines.append(
            f"| {kind} | {k['problems']} | {k['correct']}/{k['samples']} | {k['solved']}/{k['problems']} | "
            + " | ".join(cells)
            + " |"
        )
    total = [f"{greedy[w]['accuracy']:.1%}" for w in runs]
    lines.append(f"| all | {reach['n']} | | | " + " | ".join(total) + " |")
    if extra is not None:
        t = extra["step_time_s"]
        lines += [
            "",
            "The last column: `python -m experiments.smol_more_samples.smol_more_samples` (then `smol_by_kind` with "
            f"`--out experiments/smol_more_samples/results`), the same recipe with {extra['num_generations']} "
            f"trajectories per problem instead of 4, {extra['prompts_per_step']} problems x "
            f"{extra['num_generations']} per step, {extra['steps']} steps, {_min_s(extra['train_wall_time_s'])} of "
            f"training (a step: {t['step_s']:.0f} s, rollouts {t['rollout_s']:.0f} s, forward + backward + optimizer "
            f"{t['optimizer_s']:.0f} s).",
        ]
    now = engine_fingerprint(get_profile("smol"))
    older = [
        what
        for what, rec in (
            ("the sampled columns", reach),
            ("the greedy columns", by_kind),
            ("the last column", more_rec),
        )
        if rec is not None and rec.get("engine") != now
    ]
    if older:
        lines += [
            "",
            f"Generation engine: {' and '.join(older)} {'was' if len(older) == 1 else 'were'} measured with an "
            f"earlier version of the batching engine than today's ({now}), so the same command may now sample "
            "other tokens.",
        ]
    return "\n".join(lines)
