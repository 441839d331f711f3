"""Evaluation metrics: pass@k, maj@k (majority over equivalence classes), bootstrap intervals, and the per-(dataset,
config) summary table written to ``eval_summary.csv``.

Per-sample records carry ``dataset, config, problem_id, sample, gold, pred, correct (bool | None), finish_reason,
n_calls, n_calls_ok, model_tokens, total_tokens``. Accuracies are fractions in [0, 1].

maj@k tie rule (from :func:`deepmath_lib.grading.majority_vote`): predictions are grouped into equivalence classes
in sample order; the largest class wins and, on a tie, the class whose first member comes earliest (lowest
``sample`` index) wins. None predictions (no answer) are ignored; a problem with no answer at all scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .results import EVAL_SUMMARY_COLUMNS

SUMMARY_COLUMNS = list(EVAL_SUMMARY_COLUMNS)  # the contract columns of eval_summary.csv, in order
EXTRA_COLUMNS = [
    "mean_at_k_ci_low",
    "mean_at_k_ci_high",
    "mean_calls",
    "code_use_rate",
    "truncation_rate",
    "answer_rate",
    "n_skipped",
]
CURVE_COLUMNS = ["dataset", "config", "k", "maj_at_k", "ci_low", "ci_high"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021), in the stable product form
    ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``. Needs ``0 <= c <= n`` and ``1 <= k <= n``."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=float)))


def _is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def maj_at_k(preds: list[str | None], gold: str, k: int | None = None) -> bool:
    """True when the majority answer of the first ``k`` predictions (all when None) is equivalent to ``gold``.

    Majority over equivalence classes; ties go to the class whose first member appears earliest; None
    predictions are ignored, and no answer at all counts as wrong."""
    from .grading import is_equivalent, majority_vote

    sel = [None if _is_missing(p) else p for p in (preds if k is None else preds[:k])]
    rep, _ = majority_vote(sel)
    return rep is not None and is_equivalent(gold, rep)


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of the mean of ``values`` (resampling problems).

    Empty input gives ``(nan, nan)``; a single value gives a zero-width interval at that value."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // x.size)  # bound memory of the index matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


# ----------------------------------------------------------------------------------------------- tables


def _frame(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    needed = ["dataset", "config", "problem_id", "sample"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"records lack column(s): {', '.join(missing)}")
    return df


def _graded(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Rows with a gradeable ``correct`` value (sorted by problem and sample), and skipped-row counts per group."""
    correct = df["correct"] if "correct" in df.columns else pd.Series([None] * len(df), index=df.index)
    skipped_mask = correct.map(_is_missing)
    n_skipped = skipped_mask.groupby([df["dataset"], df["config"]], sort=False).sum().astype(int)
    kept = df.loc[~skipped_mask].copy()
    kept["correct"] = kept["correct"].astype(bool)
    kept = kept.sort_values(["dataset", "config", "problem_id", "sample"], kind="stable")
    return kept, n_skipped


def _problem_majority_correct(group: pd.DataFrame) -> bool:
    """maj@k for one problem's (already truncated, sample-ordered) rows: the `correct` value of the majority
    representative, i.e. of the first member of the winning equivalence class."""
    from .grading import majority_vote

    preds = [None if _is_missing(p) else p for p in group["pred"]] if "pred" in group else [None] * len(group)
    rep, _ = majority_vote(preds)
    if rep is None:
        return False
    return bool(group["correct"].iloc[preds.index(rep)])


def _mean_col(df: pd.DataFrame, col: str) -> float:
    return (
        float(pd.to_numeric(df[col], errors="coerce").mean()) if col in df.columns and len(df) else math.nan
    )


def summarize_samples(records: list[dict] | pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """One row per (dataset, config) with the ``eval_summary.csv`` columns first, then extra columns.

    Per problem, the first ``k`` samples by ``sample`` index are used (``k`` defaults to the largest number of
    samples a problem has in that group; a problem with fewer uses what it has, and the ``k`` column reports the
    smallest k actually used). maj@k: majority over equivalence classes (tie rule in the module docstring), scored
    with the representative's ``correct``; mean@k: mean correctness of those samples; pass@k: unbiased estimator with
    n = all samples available for the problem, c = their correct count. Accuracies and CIs (percentile bootstrap over
    problems) are averaged over problems with equal weight; lengths and rates over the used samples. Rows whose
    ``correct`` is None (ungradeable gold) are excluded and counted in ``n_skipped``."""
    df = _frame(records)
    kept, n_skipped = _graded(df)
    rows = []
    groups = list(df.groupby(["dataset", "config"], sort=True).groups)
    for dataset, config in groups:
        g = kept[(kept["dataset"] == dataset) & (kept["config"] == config)]
        row: dict[str, Any] = {"dataset": dataset, "config": config}
        by_problem = list(g.groupby("problem_id", sort=True))
        if not by_problem:
            row.update({c: math.nan for c in SUMMARY_COLUMNS[2:] + EXTRA_COLUMNS})
            row.update(k=0, n_problems=0, n_skipped=int(n_skipped.get((dataset, config), 0)))
            rows.append(row)
            continue
        k_group = k if k is not None else max(len(p) for _, p in by_problem)
        maj, mean, pas, used, ks = [], [], [], [], []
        for _, p in by_problem:
            k_i = min(k_group, len(p))
            head = p.iloc[:k_i]
            ks.append(k_i)
            used.append(head)
            maj.append(float(_problem_majority_correct(head)))
            mean.append(float(head["correct"].mean()))
            pas.append(pass_at_k(len(p), int(p["correct"].sum()), k_i))
        u = pd.concat(used)
        maj_lo, maj_hi = bootstrap_ci(maj)
        mean_lo, mean_hi = bootstrap_ci(mean)
        calls_ok = pd.to_numeric(u["n_calls_ok"], errors="coerce") if "n_calls_ok" in u else None
        preds = u["pred"] if "pred" in u else pd.Series([None] * len(u))
        finish = u["finish_reason"] if "finish_reason" in u else pd.Series([None] * len(u))
        row.update(
            k=int(min(ks)),
            maj_at_k=float(np.mean(maj)),
            maj_ci_low=maj_lo,
            maj_ci_high=maj_hi,
            pass_at_k=float(np.mean(pas)),
            mean_at_k=float(np.mean(mean)),
            mean_len_model_tokens=_mean_col(u, "model_tokens"),
            mean_len_total_tokens=_mean_col(u, "total_tokens"),
            n_problems=len(by_problem),
            mean_at_k_ci_low=mean_lo,
            mean_at_k_ci_high=mean_hi,
            mean_calls=_mean_col(u, "n_calls"),
            code_use_rate=float((calls_ok > 0).mean()) if calls_ok is not None else math.nan,
            truncation_rate=float(finish.isin(["budget", "context"]).mean()),  # cut by a limit
            answer_rate=float((~preds.map(_is_missing)).mean()),
            n_skipped=int(n_skipped.get((dataset, config), 0)),
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS + EXTRA_COLUMNS)


def maj_curve(records: list[dict] | pd.DataFrame, ks: Iterable[int] | None = None) -> pd.DataFrame:
    """maj@k for each k (default 1..K, K = the most samples any problem has in the group) per (dataset, config),
    over the first k samples of each problem (fewer if a problem has fewer), with a bootstrap CI over problems.
    Columns ``dataset, config, k, maj_at_k, ci_low, ci_high``. Rows with ``correct`` None are excluded."""
    df = _frame(records)
    kept, _ = _graded(df)
    out = []
    for (dataset, config), g in kept.groupby(["dataset", "config"], sort=True):
        problems = [p for _, p in g.groupby("problem_id", sort=True)]
        big_k = max(len(p) for p in problems)
        for k in sorted(set(ks)) if ks is not None else range(1, big_k + 1):
            if k < 1:
                raise ValueError(f"k must be >= 1, got {k}")
            vals = [float(_problem_majority_correct(p.iloc[:k])) for p in problems]
            lo, hi = bootstrap_ci(vals)
            out.append(
                {
                    "dataset": dataset,
                    "config": config,
                    "k": int(k),
                    "maj_at_k": float(np.mean(vals)),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


def tool_call_hist(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """How many samples made each number of tool calls, per (dataset, config): columns
    ``dataset, config, n_calls, count`` (all samples, graded or not)."""
    df = _frame(records)
    if "n_calls" not in df.columns or df.empty:
        return pd.DataFrame(columns=["dataset", "config", "n_calls", "count"])
    calls = pd.to_numeric(df["n_calls"], errors="coerce").fillna(0).astype(int)
    hist = (
        df.assign(n_calls=calls)
        .groupby(["dataset", "config", "n_calls"], sort=True)
        .size()
        .reset_index(name="count")
    )
    hist["count"] = hist["count"].astype(int)
    return hist
