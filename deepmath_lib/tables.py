"""Tables from the evaluation results: plain DataFrame computations, no drawing (``plots.py`` draws them).

Inputs: ``eval_summary.csv`` (``dataset, config, k, maj_at_k, maj_ci_low, maj_ci_high, pass_at_k, mean_at_k,
mean_len_model_tokens, mean_len_total_tokens, n_problems`` [+ ``mean_calls, code_use_rate, truncation_rate``]), the
sample records (``results.RECORD_FIELDS``) and the original's table (``deepmath_lib/data/original_results.csv``).
The configuration and dataset orders and labels below are the only copies; the README blocks and the plots use them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .datasets import dataset_label
from .lazy import LazyModule

pd = LazyModule("pandas")  # imported on first use: see lazy.py

CONFIG_ORDER: tuple[str, ...] = ("baseline", "agent", "grpo", "deepmath")
CONFIG_LABELS = {"baseline": "Baseline", "agent": "+Agent", "grpo": "+GRPO", "deepmath": "DeepMath"}
DATASET_ORDER: tuple[str, ...] = ("math500", "aime2025", "hmmt_feb2025", "hle_math", "nano")
# Shorter than datasets.dataset_label, for axis ticks and column headers.
SHORT_DATASET = {
    "math500": "MATH-500",
    "aime2025": "AIME 2025",
    "hmmt_feb2025": "HMMT Feb 2025",
    "hle_math": "HLE",
}


def _order(values: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    present = list(dict.fromkeys(str(v) for v in values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def config_order(values: Iterable[str]) -> list[str]:
    """Configurations present, in the order baseline, agent, grpo, deepmath (then any others, sorted)."""
    return _order(values, CONFIG_ORDER)


def dataset_order(values: Iterable[str]) -> list[str]:
    """Datasets present, benchmarks first in a fixed order, then any others sorted."""
    return _order(values, DATASET_ORDER)


def config_label(config: str) -> str:
    """The reader's name of a configuration ("+Agent"), the name itself when unknown."""
    return CONFIG_LABELS.get(config, config)


def dataset_short_label(dataset: str) -> str:
    """A short reader's name of a dataset ("AIME 2025", "nano (synthetic)")."""
    return SHORT_DATASET.get(dataset, dataset_label(dataset))


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by dataset (benchmarks first) then configuration (baseline, agent, grpo, deepmath)."""
    if df.empty:
        return df.reset_index(drop=True)
    d = {v: i for i, v in enumerate(dataset_order(df["dataset"]))}
    c = {v: i for i, v in enumerate(config_order(df["config"]))}
    order = sorted(range(len(df)), key=lambda i: (d[df["dataset"].iloc[i]], c[df["config"].iloc[i]]))
    return df.iloc[order].reset_index(drop=True)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, config): the row with the largest k (the headline maj@k), in the fixed order."""
    df = summary.copy()
    df["dataset"] = df["dataset"].astype(str)
    df["config"] = df["config"].astype(str)
    if "k" in df.columns:
        df = df.sort_values("k", kind="mergesort").groupby(["dataset", "config"], sort=False).tail(1)
    return sort_rows(df)


def k_text(df: pd.DataFrame) -> str:
    """The k of a table as text ("8") when it has a single one, else "k"."""
    if "k" not in df.columns or df.empty:
        return "k"
    ks = sorted(set(int(k) for k in df["k"].dropna()))
    return str(ks[0]) if len(ks) == 1 else "k"


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for reading in a notebook: maj@k with its interval as one text column, then pass@k, mean@k,
    lengths, problem count and tool use (the optional columns when present), rounded to 3 decimals."""
    df = summary.copy()
    df["maj@k"] = [
        f"{m:.1%} [{lo:.1%}, {hi:.1%}]"
        for m, lo, hi in zip(df.maj_at_k, df.maj_ci_low, df.maj_ci_high, strict=True)
    ]
    keep = ["dataset", "config", "k", "maj@k", "pass_at_k", "mean_at_k", "mean_len_model_tokens"]
    keep += ["mean_len_total_tokens", "n_problems"]
    keep += [c for c in ("mean_calls", "code_use_rate", "truncation_rate") if c in df.columns]
    return df[[c for c in keep if c in df.columns]].round(3)


def length_reduction(summary: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and non-baseline configuration: ``reduction_pct`` = 100 * (1 - len / baseline len)."""
    df = headline(summary)
    base = df[df["config"] == "baseline"].set_index("dataset")["mean_len_model_tokens"]
    rows = []
    for _, r in df[df["config"] != "baseline"].iterrows():
        b = base.get(r["dataset"])
        if b is None or pd.isna(b) or b <= 0 or pd.isna(r["mean_len_model_tokens"]):
            continue
        rows.append(
            {
                "dataset": r["dataset"],
                "config": r["config"],
                "reduction_pct": 100.0 * (1.0 - float(r["mean_len_model_tokens"]) / float(b)),
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "config", "reduction_pct"])


def comparison_table(summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Ours (headline maj@k, its interval, mean model tokens) beside the original's maj@16 / mean tokens.

    One row per configuration and dataset from either table; a dataset only one side evaluated has blanks on the other.
    """
    ours = headline(summary)
    cols = {"maj_at_k": "ours_maj", "maj_ci_low": "ours_ci_low", "maj_ci_high": "ours_ci_high"}
    cols["mean_len_model_tokens"] = "ours_mean_tokens"
    keep = ["dataset", "config"] + [c for c in cols if c in ours] + (["k"] if "k" in ours else [])
    ours = ours[keep].rename(columns=cols)
    ref = reference[["dataset", "config", "maj_at_16", "mean_tokens"]].rename(
        columns={"maj_at_16": "original_maj_at_16", "mean_tokens": "original_mean_tokens"}
    )
    return sort_rows(ours.merge(ref, on=["dataset", "config"], how="outer"))


def side_by_side(summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """A wide table, one row per configuration: ours per dataset (maj@k %, its 95% interval, mean model tokens),
    then the original's per dataset (maj@16 %, mean tokens). Readable even when no dataset is shared (nano)."""
    cols: dict[tuple[str, str], pd.Series] = {}
    ours = headline(summary) if summary is not None and not summary.empty else pd.DataFrame()
    for d in dataset_order(ours["dataset"]) if not ours.empty else []:
        sub = ours[ours["dataset"] == d].set_index("config")
        group = f"ours: {dataset_short_label(d)}"
        cols[(group, f"maj@{k_text(sub)} %")] = (100 * sub["maj_at_k"]).round(1)
        if {"maj_ci_low", "maj_ci_high"} <= set(sub.columns):
            cols[(group, "95% CI")] = sub.apply(
                lambda r: (
                    f"{100 * r['maj_ci_low']:.0f}-{100 * r['maj_ci_high']:.0f}"
                    if pd.notna(r["maj_ci_low"]) and pd.notna(r["maj_ci_high"])
                    else ""
                ),
                axis=1,
            )
        cols[(group, "tokens")] = sub["mean_len_model_tokens"].round(0)
    for d in dataset_order(reference["dataset"]):
        sub = reference[reference["dataset"] == d].set_index("config")
        group = f"original: {dataset_short_label(d)}"
        cols[(group, "maj@16 %")] = (100 * sub["maj_at_16"]).round(2)
        cols[(group, "tokens")] = sub["mean_tokens"]
    if not cols:
        return pd.DataFrame()
    table = pd.DataFrame(cols)
    table = table.reindex(config_order(table.index))
    table.index = [config_label(c) for c in table.index]
    table.index.name = "configuration"
    return table


def records_frame(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Sample records as a DataFrame (the record keys as columns)."""
    return records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))


def pick_example(records: list[dict] | pd.DataFrame) -> dict | None:
    """A correct deepmath sample with at least one call (shortest text; ties by dataset, problem, sample); failing
    that a correct agent sample with calls, then any sample with calls. None when no sample made a call."""
    df = records_frame(records)
    if df.empty or "text" not in df or "n_calls" not in df:
        return None
    df = df[df["text"].notna() & (df["n_calls"].fillna(0) >= 1)].copy()
    if df.empty:
        return None
    correct = (
        df["correct"].fillna(False).astype(bool) if "correct" in df else pd.Series(False, index=df.index)
    )
    config = df["config"].astype(str) if "config" in df else pd.Series("", index=df.index)
    df["_rank"] = 2
    df.loc[correct & (config == "agent"), "_rank"] = 1
    df.loc[correct & (config == "deepmath"), "_rank"] = 0
    df["_len"] = df["text"].str.len()
    keys = [c for c in ("_rank", "_len", "dataset", "problem_id", "sample") if c in df]
    best = df.sort_values(keys, kind="mergesort").iloc[0]
    return {k: v for k, v in best.items() if not str(k).startswith("_")}


def paired_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The paired comparisons (``comparisons.csv``, ``metrics.compare_configs``) for reading: one row per dataset and
    pair, each difference (first minus second) with its 95% interval, the problems only one side got right, and the
    Holm-adjusted p-values (maj@k: McNemar; mean@k: sign-flip, shown only when k > 1)."""

    def interval(r, col: str, scale: float, digits: int) -> str:
        lo, hi = r[f"{col}_diff_ci_low"], r[f"{col}_diff_ci_high"]
        return f"{scale * r[f'{col}_diff']:+.{digits}f} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]"

    k = int(comparisons.k.min()) if len(comparisons) else 1
    acc = "accuracy" if k == 1 else f"maj@{k}"
    rows = []
    for _, r in comparisons.iterrows():
        row = {
            "dataset": dataset_short_label(r.dataset),
            "comparison": f"{config_label(r.a)} vs {config_label(r.b)}",
            f"{acc} (points)": interval(r, "maj", 100, 1),
            "right only in first / second": f"{int(r.maj_a_only)} / {int(r.maj_b_only)}",
            "p (Holm)": f"{r.maj_p_holm:.2g}",
        }
        if k > 1:
            row[f"mean@{k} (points)"] = interval(r, "mean", 100, 1)
            # the sign-flip test samples 10,000 sign patterns: at its floor (none as extreme) p is a bound
            floor = "≤ " if r.mean_p <= 1.0001e-4 else ""
            row[f"mean@{k} p (Holm)"] = f"{floor}{r.mean_p_holm:.2g}"
        row["model tokens"] = interval(r, "model_tokens", 1, 1)
        row["total tokens"] = interval(r, "total_tokens", 1, 1)
        rows.append(row)
    return pd.DataFrame(rows)
