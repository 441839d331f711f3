"""Evaluation of the four configurations, resumable, with confidence intervals.

baseline = untrained model, plain chain-of-thought prompt, no tool; agent = untrained model in the agent loop;
grpo = trained weights, no tool; deepmath = trained weights in the agent loop. Same sampling for all. Every sample is
appended to `data/results/<profile>/samples/<dataset>__<config>.jsonl` as soon as it finishes; a rerun skips what is
done. The summary (`eval_summary.csv`) and the maj@k curve (`maj_curve.csv`) are recomputed from all samples.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import backends
from .agent import run_agent
from .datasets import DatasetError, load_problems
from .fingerprints import CONFIGS, _check_fingerprint, model_fingerprint, sample_fingerprint
from .grading import gold_is_parseable, is_equivalent
from .metrics import compare_configs, maj_curve, summarize_samples
from .models import (
    check_hub_models,
    check_weights_arg,
    trained_model_path,
)
from .profiles import DEFAULT_PROFILE, Profile, get_profile
from .prompts import prompt_for, prompt_record
from .results import (
    ResultStore,
    profile_results_dir,
    read_records,
    samples_path,
    write_eval_summary,
    write_summary,
)
from .trace import trajectory_outcomes


class GenerationFailed(RuntimeError):
    """Too many trajectories raised in the backend (a dead engine, out of memory): the run stops; nothing failed
    was stored, so a rerun retries exactly those samples."""


def failure_limit(n_jobs: int) -> int:
    """How many failed generations a run tolerates before it stops: 10% of its jobs, at least 2."""
    return max(2, n_jobs // 10)


def _record(dataset: str, config: str, prob: dict, sample: int, traj) -> dict:

    gold = str(prob["answer"])
    correct = is_equivalent(gold, traj.answer) if gold_is_parseable(gold) else None
    return {
        "dataset": dataset,
        "config": config,
        "problem_id": str(prob["id"]),
        "sample": sample,
        "problem": prob["problem"],
        "gold": gold,
        "pred": traj.answer,
        "correct": correct,
        "finish_reason": traj.finish_reason,
        "n_calls": len(traj.calls),
        "n_calls_ok": traj.n_calls_ok,
        "model_tokens": traj.model_tokens,
        "total_tokens": traj.total_tokens,
        "text": traj.text,
    }


def run_config(
    backend,
    profile: Profile,
    dataset: str,
    problems: list[dict],
    config: str,
    samples: int,
    results_root: str | Path | None = None,
    progress: bool = True,
    fingerprint: str | None = None,
) -> int:
    """Run the missing (problem, sample) pairs of one dataset x configuration; returns how many were run.
    Samples stored under another `fingerprint` (other weights or sampling) are set aside, not resumed."""

    _, tool = CONFIGS[config]
    path = samples_path(profile.name, dataset, config, results_root)
    _check_fingerprint(path, sample_fingerprint(profile, config, fingerprint))
    store = ResultStore(path)
    done = store.done_keys()
    jobs = [
        (p, s) for p in problems for s in range(samples) if (dataset, config, str(p["id"]), s) not in done
    ]
    if not jobs:
        print(f"  {dataset}/{config}: all {len(problems) * samples} samples already done", flush=True)
        return 0
    print(f"  {dataset}/{config}: {len(jobs)} of {len(problems) * samples} samples to run", flush=True)

    failures: list[str] = []
    limit = failure_limit(len(jobs))

    def save(idx: int, traj) -> None:
        prob, s = jobs[idx]
        if traj.finish_reason == "error":  # not a sample: not stored, so a rerun retries it
            failures.append(traj.error or "unknown error")
            if len(failures) > limit:
                raise GenerationFailed(
                    f"{dataset}/{config}: {len(failures)} generations failed (limit {limit}); the last: "
                    f"{failures[-1]}. Finished samples are stored; rerun to retry the rest."
                )
            return
        store.append(_record(dataset, config, prob, s, traj))

    run_agent(
        backend,
        [p["problem"] for p, _ in jobs],
        profile,
        tool=tool,
        sampling=profile.eval_sampling,
        seed=profile.seed + len(done),
        progress=progress,
        on_result=save,
    )
    if failures:
        print(
            f"  {dataset}/{config}: {len(failures)} generation(s) failed and were not stored (rerun to retry); "
            f"the last: {failures[-1]}",
            file=sys.stderr,
            flush=True,
        )
    return len(jobs) - len(failures)


def summarize(profile: str, results_root: str | Path | None = None, write: bool = True):
    """Recompute `eval_summary.csv`, `maj_curve.csv` and `comparisons.csv` (the paired comparisons of the
    configurations, :func:`deepmath_lib.metrics.compare_configs`) from every stored sample of the profile; returns
    (summary, curve)."""
    import pandas as pd

    root = profile_results_dir(profile, results_root)
    records = read_records(root / "samples") if (root / "samples").exists() else []
    if not records:
        raise FileNotFoundError(f"no samples under {root / 'samples'}; run `deepmath eval` first")
    df = pd.DataFrame(records)
    summary = summarize_samples(df)
    curve = maj_curve(df)
    if write:
        write_eval_summary(summary, profile, results_root)
        write_summary(curve, root / "maj_curve.csv")
        write_summary(compare_configs(df), root / COMPARISONS_FILE)
    return summary, curve


COMPARISONS_FILE = (
    "comparisons.csv"  # one row per dataset and pair of configurations, beside eval_summary.csv
)


def load_comparisons(profile: str, results_root: str | Path | None = None):
    """The profile's stored paired comparisons (`comparisons.csv`) as a DataFrame."""
    import pandas as pd

    path = profile_results_dir(profile, results_root) / COMPARISONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; run `deepmath eval --profile {profile}` first")
    return pd.read_csv(path)


def evaluate(
    profile: str | Profile = DEFAULT_PROFILE,
    datasets: list[str] | None = None,
    configs: list[str] | None = None,
    samples: int | None = None,
    n_problems: int | None = None,
    trained_model: str | Path | None = None,
    results_root: str | Path | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
    backend_kwargs: dict | None = None,
    prompt: str | None = None,
):
    """Run (or resume) the evaluation and return (summary, maj-curve) DataFrames.

    Baseline / +Agent run the base model with no adapter; +GRPO / DeepMath run `trained_model` (a path or hub id),
    else this repo's GRPO output, else the profile's released adapter. Every configuration runs one prompt:
    `prompt` when given, else the one a GRPO output recorded, else the profile's (paper: the original's, which the
    released adapter trained with). `backend_kwargs` reach `make_backend` (e.g. `base_url` for the openai backend)."""

    prof = get_profile(profile) if isinstance(profile, str) else profile
    datasets = list(datasets or prof.eval_datasets)
    configs = list(configs or CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    samples = prof.eval_samples if samples is None else samples  # None only: a 0 is refused, never replaced
    n_problems = prof.eval_n_problems if n_problems is None else n_problems
    if samples < 1 or (n_problems is not None and n_problems < 1):  # None: the whole set
        raise ValueError(f"samples and problems must be positive, got {samples} and {n_problems}")
    if samples > 1 and prof.eval_sampling.temperature == 0:
        raise ValueError(
            f"{prof.name} evaluates greedily (temperature 0): its {samples} samples per problem would be identical; "
            "use --samples 1"
        )
    # the problems first: a wrong dataset is reported as such, before any model is looked for or loaded
    loaded = {name: load_problems(name, n=n_problems) for name in datasets}
    empty = [name for name, probs in loaded.items() if not probs]
    if empty:
        raise DatasetError(f"no problems with an answer in {empty}: each row needs a problem and an answer")
    needs_trained = any(CONFIGS[c][0] for c in configs)

    trained = str(trained_model) if trained_model is not None else trained_model_path(prof, work_dir)
    if needs_trained and trained is None:
        raise FileNotFoundError(
            f"no trained model for {prof.name}: run `deepmath train --profile {prof.name}` (notebook 03) first, "
            "pass --trained-model PATH_OR_HUB_ID, or leave out the grpo and deepmath configurations"
        )
    if needs_trained and trained_model is not None:
        check_weights_arg(str(trained_model))

    # one prompt for every configuration, loaded now: unreadable files stop the run before any model loads
    prof = prompt_for(prof, trained, prompt)
    rec = prompt_record(prof)
    if rec["prompt"] == "original":
        print(f"prompt: the original's at {rec['commit']}, sha256 {rec['sha256'][:12]}", flush=True)
    if prof.backend != "openai":  # a model on the hub but out of reach: say so now, not after retries
        options = {"base": "--base-model", "trained": "--trained-model"}
        if any(not CONFIGS[c][0] for c in configs):
            check_hub_models(prof, None, options)
        if needs_trained:
            check_hub_models(prof, trained, options)
    for name, probs in loaded.items():
        print(f"{name}: {len(probs)} problems x {samples} samples", flush=True)
    t0 = time.time()
    for weights in (False, True):
        todo = [c for c in configs if CONFIGS[c][0] == weights]
        if not todo:
            continue
        model_path = trained if weights else None
        print(f"weights: {model_path or 'base model ' + prof.model}", flush=True)
        fingerprint = model_fingerprint(prof, model_path)
        backend = backends.make_backend(prof, model_path=model_path, **(backend_kwargs or {}))
        try:
            for name, probs in loaded.items():
                for config in todo:
                    run_config(
                        backend, prof, name, probs, config, samples, results_root, progress, fingerprint
                    )
        finally:
            backend.close()
    print(f"evaluation done in {time.time() - t0:.0f}s", flush=True)
    return summarize(prof.name, results_root)


def tool_vs_no_tool(backend, profile: Profile, problems: list[dict], seed: int = 0):
    """The same problems with the agent prompt (tool) and the plain CoT prompt (no tool), same sampling.

    Returns (table, agent trajectories, CoT trajectories); the table has one row per problem and mode with
    the answer, correctness, model tokens and calls.
    """
    import pandas as pd

    texts = [p["problem"] for p in problems]
    with_tool = run_agent(backend, texts, profile, tool=True, seed=seed)
    without = run_agent(backend, texts, profile, tool=False, seed=seed)
    golds = [p["answer"] for p in problems]
    rows = []
    for p, a, b in zip(
        problems, trajectory_outcomes(golds, with_tool), trajectory_outcomes(golds, without), strict=True
    ):
        for mode, o in (("agent", a), ("no tool", b)):
            rows.append(
                {
                    "problem": p["problem"],
                    "gold": o["gold"],
                    "mode": mode,
                    "answer": o["pred"],
                    "correct": o["correct"],
                    "model_tokens": o["model_tokens"],
                    "calls": o["calls"],
                    "finish": o["finish"],
                }
            )
    return pd.DataFrame(rows), with_tool, without
