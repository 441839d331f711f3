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

from .grading import is_equivalent, majority_vote
from .lazy import LazyModule
from .results import EVAL_SUMMARY_COLUMNS

pd = LazyModule("pandas")  # imported on first use: see lazy.py

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


# ----------------------------------------------------------------------------------------------- paired comparisons
#
# Every comparison this project makes is on the same problems (two configurations of one evaluation, or a model
# before and after GRPO), so it is judged on the per-problem differences: a paired bootstrap interval (problems
# resampled exactly as for the marginal intervals), an exact McNemar test for yes/no outcomes and a sign-flip
# permutation test for graded ones (mean@k, token counts). Holm's step-down adjustment controls the family-wise error
# over the comparisons of one table.

# the pairs of the evaluation table, (a, b): each row reports a - b
PAIRS: tuple[tuple[str, str], ...] = (
    ("deepmath", "agent"),
    ("deepmath", "baseline"),
    ("agent", "baseline"),
    ("grpo", "baseline"),
)
EXACT_SIGN_FLIP_MAX = 16  # up to this many non-zero differences the sign-flip test enumerates all 2^m signs
COMPARISON_COLUMNS = [
    "dataset",
    "a",
    "b",
    "k",
    "n_problems",
    # maj@k (greedy: correct or not), yes/no per problem: exact McNemar
    "maj_a",
    "maj_b",
    "maj_diff",
    "maj_diff_ci_low",
    "maj_diff_ci_high",
    "maj_a_only",  # problems only a got right
    "maj_b_only",  # problems only b got right
    "maj_p",
    "maj_p_holm",
    # mean@k (fraction of correct samples) per problem: sign-flip permutation test
    "mean_a",
    "mean_b",
    "mean_diff",
    "mean_diff_ci_low",
    "mean_diff_ci_high",
    "mean_p",
    "mean_p_holm",
    # mean model tokens and mean total tokens (model + executor) per problem
    "model_tokens_a",
    "model_tokens_b",
    "model_tokens_diff",
    "model_tokens_diff_ci_low",
    "model_tokens_diff_ci_high",
    "model_tokens_p",
    "total_tokens_a",
    "total_tokens_b",
    "total_tokens_diff",
    "total_tokens_diff_ci_low",
    "total_tokens_diff_ci_high",
    "total_tokens_p",
]


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs: ``a_only`` problems right under a only, ``b_only``
    under b only. Under no difference each discordant pair goes either way with probability 1/2, so
    ``p = min(1, 2 * P(X <= min(a_only, b_only)))`` for ``X ~ Binomial(a_only + b_only, 1/2)``; no discordant pair
    gives 1. Exact integer arithmetic: 10 pairs all one way give exactly 2 / 2**10."""
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**n)


def sign_flip_p(diffs: Sequence[float], n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value for a mean paired difference of zero.

    Under no difference each problem's difference is as likely with either sign. With at most
    ``EXACT_SIGN_FLIP_MAX`` non-zero differences all sign patterns are enumerated (exact); otherwise ``n_perm``
    random patterns (seeded), counting the observed one, so p >= 1 / (n_perm + 1). Zero differences do not move the
    statistic and are left out. No non-zero difference gives 1."""
    d = np.asarray(list(diffs), dtype=float)
    if np.isnan(d).any():
        raise ValueError("sign_flip_p: differences contain NaN")
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, np.abs(d).sum())  # sums equal up to rounding count as extreme
    if d.size <= EXACT_SIGN_FLIP_MAX:
        signs = 1 - 2 * ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1)
        return float((np.abs(signs @ d) >= observed - tol).mean())
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_perm, chunk):
        signs = rng.choice((-1.0, 1.0), size=(min(chunk, n_perm - start), d.size))
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return (hits + 1) / (n_perm + 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m is multiplied by m - i + 1,
    then made monotone and capped at 1. NaN entries are left out of the family and stay NaN."""
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.size, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if idx.size == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def paired_diff(
    a: Sequence[float], b: Sequence[float], test: str = "sign_flip", seed: int = 0
) -> dict[str, Any]:
    """The paired comparison of two per-problem outcome lists (same problems, same order): ``diff`` = mean(a - b),
    ``ci`` = percentile bootstrap 95% interval of it (problems resampled as in :func:`bootstrap_ci`, same seed), and
    ``p`` from ``test``: ``"mcnemar"`` (0/1 outcomes; also returns the discordant counts ``a_only`` and ``b_only``)
    or ``"sign_flip"``."""
    x = np.asarray(list(a), dtype=float)
    y = np.asarray(list(b), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes need the same problems: {x.size} against {y.size}")
    if x.size == 0:
        raise ValueError("paired_diff: no problems")
    d = x - y
    out: dict[str, Any] = {"diff": float(d.mean()), "ci": bootstrap_ci(d, seed=seed)}
    if test == "mcnemar":
        if not np.isin(np.concatenate([x, y]), (0.0, 1.0)).all():
            raise ValueError("the McNemar test needs yes/no (0/1) outcomes")
        out["a_only"] = int(((x == 1) & (y == 0)).sum())
        out["b_only"] = int(((x == 0) & (y == 1)).sum())
        out["p"] = mcnemar_exact(out["a_only"], out["b_only"])
    elif test == "sign_flip":
        out["p"] = sign_flip_p(d, seed=seed)
    else:
        raise ValueError(f"unknown test {test!r}; choose 'mcnemar' or 'sign_flip'")
    return out


def per_problem_outcomes(records: list[dict] | pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """One row per (dataset, config, problem): ``maj`` (maj@k correct, 0/1; greedy: correct or not), ``mean``
    (fraction of the first k samples correct), ``model_tokens`` and ``total_tokens`` (their means over those
    samples) and ``k`` (samples used). Same sample selection as :func:`summarize_samples`; ungradeable rows are
    left out."""
    df = _frame(records)
    kept, _ = _graded(df)
    rows = []
    for (dataset, config), g in kept.groupby(["dataset", "config"], sort=True):
        by_problem = list(g.groupby("problem_id", sort=True))
        k_group = k if k is not None else max(len(p) for _, p in by_problem)
        for pid, p in by_problem:
            head = p.iloc[: min(k_group, len(p))]
            rows.append(
                {
                    "dataset": dataset,
                    "config": config,
                    "problem_id": pid,
                    "k": len(head),
                    "maj": float(_problem_majority_correct(head)),
                    "mean": float(head["correct"].mean()),
                    "model_tokens": _mean_col(head, "model_tokens"),
                    "total_tokens": _mean_col(head, "total_tokens"),
                }
            )
    return pd.DataFrame(
        rows, columns=["dataset", "config", "problem_id", "k", "maj", "mean", "model_tokens", "total_tokens"]
    )


def compare_configs(
    records: list[dict] | pd.DataFrame,
    pairs: Iterable[tuple[str, str]] = PAIRS,
    k: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparisons, one row per dataset and pair ``(a, b)`` present in ``records``, columns
    ``COMPARISON_COLUMNS``; each difference is a - b over the problems both configurations have.

    maj@k: McNemar; mean@k and token counts: sign-flip permutation; all with paired bootstrap intervals. The
    ``*_p_holm`` columns adjust ``maj_p`` and ``mean_p`` (each its own family) over all rows of the table."""
    out = per_problem_outcomes(records, k)
    rows = []
    for dataset in sorted(out["dataset"].unique()):
        d = out[out["dataset"] == dataset]
        for a, b in pairs:
            da = d[d["config"] == a].set_index("problem_id")
            db = d[d["config"] == b].set_index("problem_id")
            if da.empty or db.empty:
                continue
            common = da.index.intersection(db.index).sort_values()
            if common.empty:
                raise ValueError(
                    f"{dataset}: {a} and {b} share no problem; a paired comparison needs the same ones"
                )
            da, db = da.loc[common], db.loc[common]
            row: dict[str, Any] = {
                "dataset": dataset,
                "a": a,
                "b": b,
                "k": int(min(da["k"].min(), db["k"].min())),
                "n_problems": len(common),
            }
            for metric, test in (
                ("maj", "mcnemar"),
                ("mean", "sign_flip"),
                ("model_tokens", "sign_flip"),
                ("total_tokens", "sign_flip"),
            ):
                r = paired_diff(da[metric], db[metric], test=test, seed=seed)
                row.update(
                    {
                        f"{metric}_a": float(da[metric].mean()),
                        f"{metric}_b": float(db[metric].mean()),
                        f"{metric}_diff": r["diff"],
                        f"{metric}_diff_ci_low": r["ci"][0],
                        f"{metric}_diff_ci_high": r["ci"][1],
                        f"{metric}_p": r["p"],
                    }
                )
                if test == "mcnemar":
                    row.update({f"{metric}_a_only": r["a_only"], f"{metric}_b_only": r["b_only"]})
            rows.append(row)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for metric in ("maj", "mean"):
        table[f"{metric}_p_holm"] = holm(table[f"{metric}_p"]) if len(table) else []
    return table
