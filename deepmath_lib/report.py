"""The generated blocks of README.md and docs/*.md, made from stored measurements, never typed by hand.

`deepmath report` rewrites each `<!-- NAME:start -->` … `<!-- NAME:end -->` block of those pages from its source: a
function here (`BLOCKS`) or an experiment's `experiments/NAME/block.py`. The prose around the figures lives in
Markdown templates (`docs/templates/*.md`, filled by `fill`). `deepmath report --check` exits 1 when a page differs
(a test runs it). It also redraws `figures/profiles_side_by_side.png` (nano and smol) from the same results."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from .bench import load
from .bench.rollouts import GOALS as RGOALS
from .bench.sandbox import GOALS
from .datasets import dataset_label, load_reference
from .evaluate import COMPARISONS_FILE
from .paths import REPO_ROOT
from .profiles import DEFAULT_PROFILE, get_profile
from .prompts import ORIGINAL_COMMIT
from .results import STEP_TIME_COLUMNS, profile_results_dir
from .sandbox.redteam import layers_block
from .tables import CONFIG_LABELS

TEMPLATES_DIR = REPO_ROOT / "docs" / "templates"


def fill(template: str, **values) -> str:
    """`docs/templates/<template>.md` with its `{fields}` filled from `values` (`str.format`; `{{` for a brace)."""
    return (TEMPLATES_DIR / f"{template}.md").read_text().rstrip("\n").format(**values)


def gpu_block(path: str | Path | None = None) -> str:
    """The GPU check's figures (scripts/gpu_check.py's JSON line, stored under data/results/paper/)."""
    path = Path(path or REPO_ROOT / "data" / "results" / "paper" / "gpu_check_h200.json")
    r = json.loads(path.read_text())
    steps = r.get("step_seconds", [])
    return fill(
        "gpu",
        **{
            **r,
            "cfg": r.get("grpo_config", {}),
            "shape": r.get("paper_shape", {}),
            "lora_m": r.get("lora_trainable_params_m", 0),
            "n_steps": len(steps),
            "steps": ", ".join(f"{x:.0f} s" for x in steps),
            "thread": "ok" if r["thread_generate_ok"] else "FAILED",
            "generate_batch": r.get("generate_batch"),
            "errors": r["errors"] or "none",
        },
    )


def results_block(profile: str = DEFAULT_PROFILE, results_root: str | Path | None = None) -> str:
    """The eval table and the GRPO before/after line of a profile, from eval_summary.csv and train_summary.json."""
    import pandas as pd

    root = profile_results_dir(profile, results_root)
    df = pd.read_csv(root / "eval_summary.csv")
    prof = get_profile(profile)
    s = prof.eval_sampling
    k = int(df.k.iloc[0])
    n = int(df.n_problems.iloc[0])
    demo = "make demo" + ("" if profile == DEFAULT_PROFILE else f" PROFILE={profile}")
    sampling = "greedy" if s.temperature == 0 else f"T {s.temperature} / top_p {s.top_p} / top_k {s.top_k}"
    data = ", ".join(dataset_label(d) for d in dict.fromkeys(df.dataset))
    lines = [
        fill(
            "results",
            demo=demo,
            n=n,
            data=data,
            k=k,
            plural="s" * (k > 1),
            sampling=sampling,
            tokens=s.max_model_tokens,
        ),
        "",
    ]
    if k > 1:
        lines += [
            f"| config | maj@{k} [95% CI] | pass@{k} | mean@{k} | mean model tokens | mean total tokens "
            "| tool calls / trajectory |",
            "|---|---|---|---|---|---|---|",
        ]
    else:  # one (greedy) sample: maj@1 = pass@1 = mean@1 is the accuracy
        lines += [
            "| config | accuracy [95% CI] | mean model tokens | mean total tokens | tool calls / trajectory |",
            "|---|---|---|---|---|",
        ]
    for config, label in CONFIG_LABELS.items():
        row = df[df.config == config]
        if row.empty:
            continue
        r = row.iloc[0]
        acc = f"{r.maj_at_k:.1%} [{r.maj_ci_low:.1%}, {r.maj_ci_high:.1%}]"
        more = f" {r.pass_at_k:.1%} | {r.mean_at_k:.1%} |" if k > 1 else ""
        lines.append(
            f"| {label} | {acc} |{more} {r.mean_len_model_tokens:.1f} | {r.mean_len_total_tokens:.1f} | "
            f"{r.get('mean_calls', float('nan')):.2f} |"
        )
    train = root / "train_summary.json"
    if train.is_file():
        t = json.loads(train.read_text())
        cis = {
            "ab": t["accuracy_ci_before"],
            "aa": t["accuracy_ci_after"],
            "cb": t["code_use_ci_before"],
            "ca": t["code_use_ci_after"],
        }
        lines += ["", fill("results_grpo", **t, **cis)]
        metrics = root / "train_metrics.csv"
        cols = list(STEP_TIME_COLUMNS)
        log = pd.read_csv(metrics) if metrics.is_file() else None
        if log is not None and all(c in log for c in cols) and log[cols].notna().all().all():
            # the median step: robust to a step slowed by other work on the machine
            lines[-1] += " " + fill("results_step_time", steps=len(log), **log[cols].median())
    run = _stored(
        f"demo_{profile}"
    )  # the pipeline's own record of its last run (deepmath pipeline stores it)
    if run is not None and profile != DEFAULT_PROFILE:  # the default's is in the fresh-clone timing block
        steps = ", ".join(f"{nb} {_min_s(s)}" for nb, s in run["notebooks"].items())
        lines += [
            "",
            f"`{demo}` took {_min_s(run['seconds'])} in all ({steps}; {conditions_text(run['conditions'])}).",
        ]
    return "\n".join(lines)


def headline_block(results_root: str | Path | None = None) -> str:
    """The README's headline: the four configurations on nano, on smol and in the original's reported table, side by
    side (accuracy and mean model tokens; the original's counts executor tokens too)."""
    import pandas as pd

    cols, cells = [], {c: [] for c in CONFIG_LABELS}
    for profile in ("nano", "smol"):
        df = pd.read_csv(profile_results_dir(profile, results_root) / "eval_summary.csv")
        k, n = int(df.k.iloc[0]), int(df.n_problems.iloc[0])
        cols.append(f"{profile} ({'accuracy' if k == 1 else f'maj@{k}'}, {n} problems)")
        for c in CONFIG_LABELS:
            r = df[df.config == c].iloc[0]
            cells[c].append(f"{r.maj_at_k:.1%} / {r.mean_len_model_tokens:.0f}")
    ref = load_reference()
    for dataset, label in (("aime2025", "AIME 2025"), ("math500", "MATH-500")):
        cols.append(f"original, {label} (maj@16)")
        for c in CONFIG_LABELS:
            r = ref[(ref.dataset == dataset) & (ref.config == c)].iloc[0]
            cells[c].append(f"{r.maj_at_16:.1%} / {r.mean_tokens:,.0f}")
    lines = [
        "| config | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
        *(f"| {CONFIG_LABELS[c]} | " + " | ".join(v) + " |" for c, v in cells.items()),
        "",
    ]
    for profile in ("nano", "smol"):
        t = json.loads((profile_results_dir(profile, results_root) / "train_summary.json").read_text())
        lines.append(
            f"- GRPO on {profile} ({t['steps']} steps), paired on {t['heldout_problems']} held-out problems: accuracy "
            f"{t['accuracy_before']:.1%} → {t['accuracy_after']:.1%} ({_points(t['accuracy_diff'], *t['accuracy_diff_ci'])}, "
            f"McNemar {_p(t['accuracy_diff_p'])}), code use {t['code_use_rate_before']:.1%} → "
            f"{t['code_use_rate_after']:.1%}."
        )
    return "\n".join(lines)


def _p(p: float, sampled: bool = False) -> str:
    """A p-value for prose. `sampled`: from the sign-flip test's 10,000 seeded draws, whose smallest value
    1/10,001 (no draw as extreme) is stated as a bound."""
    if sampled and p <= 1.0001e-4:
        return "p ≤ 0.0001"
    if p < 0.001:
        return f"p = {p:.1e}".replace("e-0", "e-")
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _points(d: float, lo: float, hi: float) -> str:
    return f"{100 * d:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _tokens(d: float, lo: float, hi: float) -> str:
    return f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _clear(d: float, lo: float, hi: float, p: float) -> bool:
    """A difference the data show: its interval excludes 0 and its p is below 0.05."""
    return (lo > 0 or hi < 0) and p < 0.05


def _pair_label(a: str, b: str) -> str:
    return f"{CONFIG_LABELS.get(a, a)} vs {CONFIG_LABELS.get(b, b)}"


def comparisons_block(profile: str = DEFAULT_PROFILE, results_root: str | Path | None = None) -> str:
    """The paired comparisons of a profile's evaluation (comparisons.csv, written by `deepmath eval`) and of GRPO's
    before/after check (the paired fields of train_summary.json)."""
    import pandas as pd

    root = profile_results_dir(profile, results_root)
    df = pd.read_csv(root / COMPARISONS_FILE)
    k = int(df.k.min())
    n = int(df.n_problems.min())
    acc = "accuracy" if k == 1 else f"maj@{k}"
    mean_test = f", the mean@{k} ones sign-flip permutation tests" if k > 1 else ""
    lines = [
        fill("comparisons", n=n, file=COMPARISONS_FILE, acc=acc, mean_test=mean_test, count=len(df)),
        "",
    ]
    if k > 1:
        lines += [
            f"| comparison | {acc} difference [95% CI] | right only in the first / second | p (Holm) "
            f"| mean@{k} difference [95% CI] | p (Holm) | model tokens [95% CI] | total tokens [95% CI] |",
            "|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines += [
            "| comparison | accuracy difference [95% CI] | right only in the first / second | p (Holm) "
            "| model tokens [95% CI] | total tokens [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
    for _, r in df.iterrows():
        cells = [
            _pair_label(r.a, r.b) + (f" ({r.dataset})" if df.dataset.nunique() > 1 else ""),
            _points(r.maj_diff, r.maj_diff_ci_low, r.maj_diff_ci_high),
            f"{int(r.maj_a_only)} / {int(r.maj_b_only)}",
            _p(r.maj_p_holm).removeprefix("p = "),  # McNemar: exact
        ]
        if k > 1:
            cells += [
                _points(r.mean_diff, r.mean_diff_ci_low, r.mean_diff_ci_high),
                # a sampled p at its floor is a bound, and so is its Holm adjustment
                f"≤ {r.mean_p_holm:.4f}" if r.mean_p <= 1.0001e-4 else _p(r.mean_p_holm).removeprefix("p = "),
            ]
        cells += [
            _tokens(r.model_tokens_diff, r.model_tokens_diff_ci_low, r.model_tokens_diff_ci_high),
            _tokens(r.total_tokens_diff, r.total_tokens_diff_ci_low, r.total_tokens_diff_ci_high),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    train = root / "train_summary.json"
    t = json.loads(train.read_text()) if train.is_file() else {}
    if "accuracy_diff" in t:
        paired = fill(
            "comparisons_grpo",
            heldout_problems=t["heldout_problems"],
            paired_source=t["paired_source"],
            acc_diff=_points(t["accuracy_diff"], *t["accuracy_diff_ci"]),
            ga=t["accuracy_changed"],
            acc_p=_p(t["accuracy_diff_p"]),
            code_diff=_points(t["code_use_diff"], *t["code_use_diff_ci"]),
            gc=t["code_use_changed"],
            code_p=_p(t["code_use_diff_p"]),
            tok_diff=_tokens(t["model_tokens_diff"], *t["model_tokens_diff_ci"]),
            tok_p=_p(t["model_tokens_diff_p"], sampled=True),
        )
        lines += ["", paired]
        stored = round(t["mean_model_tokens_after"] - t["mean_model_tokens_before"], 1)
        if abs(stored - t["model_tokens_diff"]) > 0.05:  # the outcomes are not the check's own run
            before, after = t["mean_model_tokens_before"], t["mean_model_tokens_after"]
            lines[-1] += " " + fill("comparisons_grpo_lengths", before=before, after=after, stored=stored)
    return "\n".join(lines)


def _row(df, a: str, b: str):
    r = df[(df.a == a) & (df.b == b)]
    return None if r.empty else r.iloc[0]


def _acc_phrase(r, k: int) -> str:
    """How two configurations' accuracies compare, in words and figures."""
    acc = "accuracy" if k == 1 else f"maj@{k}"
    d, lo, hi, p = r.maj_diff, r.maj_diff_ci_low, r.maj_diff_ci_high, r.maj_p_holm
    fig = f"{acc} {_points(d, lo, hi)}, {_p(p)}"
    if _clear(d, lo, hi, p):
        return f"{'more' if d > 0 else 'less'} accurate ({fig})"
    return f"no measurable accuracy difference ({fig})"


def _len_phrase(r, col: str, what: str) -> str:
    """How two configurations' lengths (`col`: model_tokens or total_tokens) compare."""
    d, lo, hi, p = r[f"{col}_diff"], r[f"{col}_diff_ci_low"], r[f"{col}_diff_ci_high"], r[f"{col}_p"]
    fig = f"{_tokens(d, lo, hi)}, {_p(p, sampled=True)}"
    if _clear(d, lo, hi, p):
        return f"{'longer' if d > 0 else 'shorter'} in {what} ({fig})"
    return f"no measurable difference in {what} ({fig})"


def conclusion_block(profile: str = DEFAULT_PROFILE, results_root: str | Path | None = None) -> str:
    """The profile's conclusions, stated from the paired comparisons: a difference counts when its interval
    excludes 0 and its p (Holm-adjusted for accuracy) is below 0.05."""
    import pandas as pd

    root = profile_results_dir(profile, results_root)
    df = pd.read_csv(root / COMPARISONS_FILE)
    k = int(df.k.min())
    t = json.loads((root / "train_summary.json").read_text())
    out = []
    if "accuracy_diff" in t:
        d, (lo, hi), p = t["accuracy_diff"], t["accuracy_diff_ci"], t["accuracy_diff_p"]
        cd, (clo, chi), cp = t["code_use_diff"], t["code_use_diff_ci"], t["code_use_diff_p"]
        acc = (
            f"{'raised' if d > 0 else 'lowered'} {profile}'s accuracy"
            if _clear(d, lo, hi, p)
            else f"did not measurably change {profile}'s accuracy"
        )
        code = (
            f"{'raised' if cd > 0 else 'lowered'} its code use"
            if _clear(cd, clo, chi, cp)
            else "did not measurably change its code use"
        )
        g = t["accuracy_changed"]
        out.append(
            fill(
                "conclusion_grpo",
                heldout_problems=t["heldout_problems"],
                acc=acc,
                acc_diff=_points(d, lo, hi),
                gained=g["gained"],
                lost=g["lost"],
                acc_p=_p(p),
                code=code,
                code_diff=_points(cd, clo, chi),
                code_p=_p(cp),
            )
        )
    items = []
    for a, b, what in (
        ("agent", "baseline", "the tool alone"),
        ("deepmath", "agent", "GRPO, with the tool"),
        ("deepmath", "baseline", "both"),
        ("grpo", "baseline", "GRPO, without the tool"),
    ):
        r = _row(df, a, b)
        if r is None:
            continue
        items.append(
            f"- {_pair_label(a, b)} ({what}): {_acc_phrase(r, k)}; {_len_phrase(r, 'model_tokens', 'model tokens')}; "
            f"{_len_phrase(r, 'total_tokens', 'total tokens, executor output counted')}."
        )
    out.append(fill("conclusion_eval", items="\n".join(items)))
    return "\n\n".join(out)


def _stored(name: str, bench_dir: str | Path | None = None) -> dict | None:
    """A stored benchmark record, or None when that benchmark has not been run."""

    try:
        return load(name, bench_dir)
    except FileNotFoundError:
        return None


def conditions_text(c: dict) -> str:
    """The machine and load a measurement was taken under, in words."""
    where = c.get("gpu") or f"{c.get('cpus')} CPU cores ({c.get('cpu')}), no GPU"
    # records without the mark had their conditions taken when the result was saved
    when = " at the start" if c.get("load_taken") == "start" else ""
    return f"{where}, load average {c.get('load_avg_1m')}{when}, {c.get('date')}"


EXECUTORS = {
    "bare_exec": "bare `exec`",
    "sandbox": "our Sandbox (warm)",
    "smolagents": "smolagents LocalPythonExecutor",
    "process_per_snippet": "process per snippet",
}
SNIPPETS = {
    "trivial": "trivial (`x = 1 + 1`)",
    "sympy_solve": "`sympy.solve`",
    "loop_1e5": "1e5-iteration loop",
}


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.3g}" if v < 100 else f"{v:.0f}"


def bench_block(bench_dir: str | Path | None = None) -> str:
    """The benchmarks' figures, from the JSON each `deepmath bench ...` run stores under data/results/bench/."""

    sb = load("sandbox", bench_dir)
    lat = sb["latency_ms"]
    lines = [
        f"`deepmath bench sandbox` — median milliseconds per snippet, side by side in one run ({sb['repeats']} "
        f"repeats; {conditions_text(sb['conditions'])}):",
        "",
        "| snippet | " + " | ".join(EXECUTORS[e] for e in lat) + " |",
        "|---" * (len(lat) + 1) + "|",
    ]
    for key, label in SNIPPETS.items():
        lines.append(f"| {label} | " + " | ".join(_ms(lat[e][key]) for e in lat) + " |")
    lines += [
        "",
        fill(
            "bench_sandbox",
            **sb,
            goal_overhead=GOALS["overhead_ms"],
            goal_loop=GOALS["loop_speedup_vs_smolagents"],
            goal_creation=GOALS["creation_ms"],
        ),
    ]
    gr = load("grading", bench_dir)
    lines += ["", fill("bench_grading", **{**gr, "conditions": conditions_text(gr["conditions"])})]
    for name in (
        "rollouts_nano_transformers",
        "rollouts_nano_vllm",
        "rollouts_smol_transformers",
        "rollouts_smol_vllm",
    ):
        r = _stored(name, bench_dir)
        if r is None:
            continue
        title = (
            f"`deepmath bench rollouts --profile {r['profile']}"
            + (f" --backend {r['backend']}" if r["backend"] != "transformers" else "")
            + f" --n {r['n']} --slots {r.get('slots', r['n'])}"
            + (
                f" --in-flight {r['in_flight']}"
                if r.get("in_flight", r.get("slots")) != r.get("slots")
                else ""
            )
            + f" --seq-n {r.get('sequential_trajectories', 0)}"
            + f" --rollout-repeats {r.get('repeats', 1)}`"
        )
        if "fraction_of_raw" not in r:  # stored before the raw figure existed
            continue

        goal_x = goal_f = ""
        if name == "rollouts_nano_transformers":  # the goals were set on nano
            goal_x = f" (goal ≥ {RGOALS['rollout_speedup']:g}x)"
            goal_f = f" (goal ≥ {RGOALS['fraction_of_raw']:.0%})"

        lines += [
            "",
            fill("bench_rollouts", **{**r, "title": title, "in_flight": r.get("in_flight", r["slots"])}),
            "",
            "| | model tokens/s |",
            "|---|---|",
            f"| raw batched generate | {r['raw_model_tokens_per_s']:,.0f} |",
            f"| agent loop, {r['slots']} rows | {r['concurrent_model_tokens_per_s']:,.0f} |",
            *(
                [
                    f"| agent loop, {r['slots']} rows, its sandboxes started before the clock | "
                    f"{r['presandboxed_model_tokens_per_s']:,.0f} |"
                ]
                if "sandbox_share" in r  # stored since the bench runs it
                else []
            ),
            f"| agent loop, one at a time | {r['sequential_model_tokens_per_s']:,.0f} |",
        ]
        ceiling = ""
        if "raw_speedup" in r:  # stored before the one-row figure existed: no such row
            lines.append(f"| raw `generate`, one row | {r['raw_one_row_model_tokens_per_s']:,.0f} |")
            ceiling = " " + fill("bench_rollouts_ceiling", **r)
        cond = conditions_text(r["conditions"])
        summary = fill(
            "bench_rollouts_summary", **{**r, "goal_x": goal_x, "goal_f": goal_f, "conditions": cond}
        )
        lines += ["", summary + ceiling]
        if "concurrent_steps" in r:  # where the batch's rows went (stored since the engine counts them)
            mean = r["concurrent_model_tokens"] / r["concurrent_trajectories"]
            rows = {
                **r,
                "mean": mean,
                "step_ms": 1000 * r["concurrent_seconds"] / r["concurrent_steps"],
                "raw_step_ms": 1000 * r["raw_rows"] / r["raw_model_tokens_per_s"],
                "sparse_rows": r["slots"] / 8,
            }
            lines += ["", fill("bench_rollouts_rows", **rows)]
            if "concurrent_sparse_seconds" in r:
                lines[-1] += " " + fill("bench_rollouts_sparse", **r)
        if "sandbox_share" in r:
            same = r["presandboxed_model_tokens"] == r["concurrent_model_tokens"]
            tokens = (
                f"{r['concurrent_model_tokens']:,} model tokens both times"
                if same
                else f"{r['presandboxed_model_tokens']:,} model tokens against {r['concurrent_model_tokens']:,}: "
                "this backend's batches depend on timing"
            )
            faster = r["presandboxed_model_tokens_per_s"] / r["concurrent_model_tokens_per_s"] - 1
            effect = (
                fill("bench_rollouts_lifecycle_cost", faster=faster, sandbox_share=r["sandbox_share"])
                if r["sandbox_share"] > 0
                else fill("bench_rollouts_lifecycle_noise", **r)
            )
            lines += ["", fill("bench_rollouts_lifecycle", tokens=tokens, effect=effect)]
    return "\n".join(lines)


def grading_block(bench_dir: str | Path | None = None) -> str:
    """Our grader against bare math-verify on the labelled suite (`deepmath bench grading --suite`)."""

    s = load("grading", bench_dir).get("suite")
    if not s:
        raise KeyError(
            "data/results/bench/grading.json has no suite figures; run `deepmath bench grading --suite`"
        )
    return fill("grading", **s)


def sandbox_layers_block() -> str:
    """Which sandbox layer stops which red-team probe (stored by `python -m deepmath_lib.sandbox.redteam --layers`)."""

    return layers_block()


def _min_s(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def timing_block(bench_dir: str | Path | None = None) -> str:
    """What `make test` and `make demo` cost on a fresh clone (scripts/fresh_clone.py's record)."""
    r = _stored("fresh_clone", bench_dir)
    if r is None:
        return "Not measured on this commit's line yet: `python scripts/fresh_clone.py --demo` measures it."
    test, demo = r["steps"]["make_test"], r["steps"].get("make_demo")
    lines = [
        fill(
            "timing",
            commit=r["commit"][:10],
            conditions=conditions_text(r["conditions"]),
            test_time=_min_s(test["seconds"]),
            pytest="; ".join(test["pytest"]),
        )
    ]
    if demo:
        nbs = demo.get("pipeline", {}).get("notebooks", {})
        per = ", ".join(f"{name} {_min_s(sec)}" for name, sec in nbs.items())
        if demo["eval_summary_reproduced"]:
            same = "is identical to the committed one"
        elif "configs_differing" in demo:
            differ = demo["configs_differing"]
            same = f"differs from the committed one in the rows {', '.join(differ)}" + (
                ": the rows of the models GRPO trains (the run retrains them), while the rows of fixed weights are "
                "identical"
                if differ and set(differ) <= {"grpo", "deepmath"}
                else ""
            )
        else:
            same = "differs from the committed one"
        lines.append(fill("timing_demo", demo_time=_min_s(demo["seconds"]), per=per, same=same))
    return "\n".join(lines)


def space_block(bench_dir: str | Path | None = None) -> str:
    r = _stored("space", bench_dir)
    if r is None:
        return "Not measured yet: run `deepmath bench space`, then `deepmath report`."
    secret = "**leaked**" if r["secret_leaked"] else "in no response"
    return fill("space", **{**r, "secret": secret, "conditions": conditions_text(r["conditions"])})


def fidelity_block(profile=None) -> str:
    """The fidelity table (`docs/templates/fidelity.md`): the original's settings (IntelLabs/DeepMath at 278bb58:
    `configs/training.yaml`, `deep_math/models.py`, `deep_math/rewards.py`, `example.sh`) and why each deviation is
    kept, beside the paper profile's own values, read from the profile (`profile` replaces it in tests)."""

    p = profile or get_profile("paper")
    tr, ev = p.train_sampling, p.eval_sampling
    code_rule = {
        "called": "any well-formed call, run or not",
        "ran": "only a snippet that ran without error",
    }.get(p.code_reward, p.code_reward)
    prompt = (
        f"`prompt` = `{p.prompt}`: read at run time from a clone or from the files at the pinned commit, never "
        "stored here; all four rows of a table run one prompt, and a GRPO run records its own with its weights"
        if p.prompt == "original"
        else f"`prompt` = `{p.prompt}`: the instruction and solved examples of `deepmath_lib/prompts.py`"
    )
    return fill(
        "fidelity",
        commit=ORIGINAL_COMMIT,
        name=p.name,
        model=f"`{p.model}`; base, no adapter",
        prompt=prompt,
        agent=f"`max_calls` {p.max_calls}, `max_tokens_per_step` {p.max_tokens_per_step:,}, `sandbox_timeout` "
        f"{p.sandbox_timeout:g} s",
        budget=f"{tr.max_model_tokens:,} generated tokens (executor output not counted)",
        prompt_length=f"`max_prompt_length` {p.max_prompt_length:,}"
        if p.max_prompt_length
        else "`max_prompt_length` none: every prompt whole",
        training_length=f"`train_steps` {p.train_steps:,} over at most {p.train_problems:,} deduplicated problems; "
        f"no dev split; a checkpoint every {p.save_steps} steps",
        lora=f"r{p.lora_r}, α{p.lora_alpha}, {'rsLoRA' if p.use_rslora else 'no rsLoRA'}, all linear layers, "
        f"dropout {p.lora_dropout:g}",
        optimiser=f"`{p.optim}`, lr {p.learning_rate:.0e}".replace("e-0", "e-")
        + f", {p.lr_scheduler}, warmup {p.warmup_ratio:g}, weight decay {p.weight_decay:g}",
        loss=f"`{p.loss_type}`, `epsilon_high` {p.epsilon_high}, β {p.beta:g}",
        ref_sync=f"`sync_ref_model` {'on' if p.sync_ref_model else 'off'}; α {p.ref_model_mixup_alpha:g}, every "
        f"{p.ref_model_sync_steps} steps when on",
        batch=f"{p.num_generations} generations per prompt, {p.prompts_per_step * p.num_generations} completions "
        "per step on any GPU count",
        train_sampling=f"T {p.temperature_start:g} → {p.temperature_end:g} over {p.temperature_steps:,} steps, top_p "
        f"{tr.top_p:g}, top_k {tr.top_k}; the schedule also reaches the training log-probs",
        rewards=f"accuracy {p.reward_weights[0]}, code use {p.reward_weights[1]}; `code_reward` = `{p.code_reward}`: "
        f"{code_rule}",
        seed_data=f"{p.seed}; `{p.train_data}`, deduplicated and shuffled with the seed",
        eval_sampling=f"T {ev.temperature:g}, top_p {ev.top_p:g}, top_k {ev.top_k}, {p.eval_samples} samples, "
        f"{ev.max_model_tokens:,} tokens",
        context=f"`max_model_len` {p.max_model_len:,}, every configuration",
        in_flight=f"many (`concurrency` {p.concurrency}, vLLM batches them)",
    )


BLOCKS = {
    "headline": headline_block,
    "gpu": gpu_block,
    "results": results_block,
    "results_smol": lambda: results_block("smol"),
    "comparisons": comparisons_block,
    "comparisons_smol": lambda: comparisons_block("smol"),
    "conclusion": conclusion_block,
    "conclusion_smol": lambda: conclusion_block("smol"),
    "bench": bench_block,
    "grading": grading_block,
    "sandbox_layers": sandbox_layers_block,
    "timing": timing_block,
    "space": space_block,
    "fidelity": fidelity_block,
}


DOCS = ["README.md", "docs/*.md"]  # the files whose blocks `deepmath report` fills, relative to the repo root
EXPERIMENTS_DIR = REPO_ROOT / "experiments"


def experiment_blocks(root: str | Path | None = None) -> dict:
    """Blocks that experiments provide: each `experiments/<name>/block.py` with a `render()` fills the block
    `<name>`. The library names no experiment; it only looks for that file."""
    import importlib

    root = Path(root or EXPERIMENTS_DIR)
    found = {}
    for path in sorted(root.glob("*/block.py")):
        if str(root.parent) not in sys.path:  # experiments import each other as the `experiments` package
            sys.path.insert(0, str(root.parent))
        module = importlib.import_module(f"{root.name}.{path.parent.name}.block")
        found[path.parent.name] = module.render
    return found


def all_blocks() -> dict:
    """Every block name and the function that makes it: the library's own, then the experiments'."""
    return {**BLOCKS, **experiment_blocks()}


MARKER = re.compile(r"<!-- (\w+):start -->\n.*?<!-- \1:end -->", re.S)


def render(text: str, blocks: dict | None = None) -> str:
    """`text` with each of its `<!-- NAME:start -->` … `<!-- NAME:end -->` blocks regenerated; a block whose name
    no source makes raises ValueError."""
    blocks = all_blocks() if blocks is None else blocks
    made: dict[str, str] = {}

    def fill(m: re.Match) -> str:
        name = m.group(1)
        if name not in blocks:
            raise ValueError(f"no source makes the block {name!r}")
        if name not in made:
            made[name] = blocks[name]()
        return f"<!-- {name}:start -->\n{made[name]}\n<!-- {name}:end -->"

    return MARKER.sub(fill, text)


def doc_files(root: str | Path | None = None) -> list[Path]:
    """README.md and docs/*.md, the pages `deepmath report` fills."""
    root = Path(root or REPO_ROOT)
    return [p for pattern in DOCS for p in sorted(root.glob(pattern))]
