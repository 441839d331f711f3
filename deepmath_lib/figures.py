"""Figures from the evaluation results (notebook 05, ``deepmath figures``).

Every ``plot_*`` function takes DataFrames (or record lists) and an output folder, saves one PNG there and returns its
path (None when its inputs hold nothing to draw). Figures are drawn on ``matplotlib.figure.Figure`` objects (no
pyplot state, any backend) with fixed sizes, orders and colours, so the same inputs give the same files.

Inputs: ``eval_summary.csv`` (``dataset, config, k, maj_at_k, maj_ci_low, maj_ci_high, pass_at_k, mean_at_k,
mean_len_model_tokens, mean_len_total_tokens, n_problems`` [+ ``mean_calls, code_use_rate, truncation_rate``]), the
sample records (``results.RECORD_FIELDS``), a maj-curve table (``dataset, config, k, maj_at_k, ci_low, ci_high``),
the original's table (``data/reference/original_results.csv``) and optionally ``train_metrics.csv``.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .datasets import dataset_label, load_reference
from .results import TRAIN_METRICS_COLUMNS, profile_results_dir, read_records

CONFIG_ORDER: tuple[str, ...] = ("baseline", "agent", "grpo", "deepmath")
CONFIG_LABELS = {"baseline": "Baseline", "agent": "+Agent", "grpo": "+GRPO", "deepmath": "DeepMath"}
CONFIG_COLORS = {"baseline": "#8c8c8c", "agent": "#f28e2b", "grpo": "#4e79a7", "deepmath": "#59a14f"}
DATASET_ORDER: tuple[str, ...] = ("math500", "aime2025", "hmmt_feb2025", "hle_math", "nano")
DATASET_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
SHORT_DATASET = {
    "math500": "MATH-500",
    "aime2025": "AIME 2025",
    "hmmt_feb2025": "HMMT Feb 2025",
    "hle_math": "HLE",
}
TRAIN_COLUMNS = TRAIN_METRICS_COLUMNS
DPI = 120

FIGURE_FILES = {
    "accuracy": "accuracy.png",
    "length": "output_length.png",
    "reduction": "length_reduction.png",
    "acc_vs_len": "accuracy_vs_length.png",
    "maj_curve": "maj_at_k.png",
    "tool_calls": "tool_calls.png",
    "trace": "example_trace.png",
    "reference": "original_vs_ours.png",
    "training": "training_curves.png",
}


# ----------------------------------------------------------------------------------------------- helpers


@contextmanager
def _style():
    import matplotlib as mpl
    import seaborn as sns

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}
    rc.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold", "svg.hashsalt": "deepmath"})
    with mpl.rc_context(rc):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, out_dir: str | Path, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _order(values: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    present = list(dict.fromkeys(str(v) for v in values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def config_order(values: Iterable[str]) -> list[str]:
    """Configurations present, in the order baseline, agent, grpo, deepmath (then any others, sorted)."""
    return _order(values, CONFIG_ORDER)


def dataset_order(values: Iterable[str]) -> list[str]:
    """Datasets present, benchmarks first in a fixed order, then any others sorted."""
    return _order(values, DATASET_ORDER)


def _color(config: str) -> str:
    if config in CONFIG_COLORS:
        return CONFIG_COLORS[config]
    extra = ["#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
    return extra[sum(map(ord, config)) % len(extra)]


def _label(config: str) -> str:
    return CONFIG_LABELS.get(config, config)


def _dlabel(dataset: str) -> str:
    return SHORT_DATASET.get(dataset, dataset_label(dataset))


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, config): the row with the largest k (the headline maj@k)."""
    df = summary.copy()
    df["dataset"] = df["dataset"].astype(str)
    df["config"] = df["config"].astype(str)
    if "k" in df.columns:
        df = df.sort_values("k", kind="mergesort").groupby(["dataset", "config"], sort=False).tail(1)
    return _sorted(df)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by dataset (benchmarks first) then configuration (baseline, agent, grpo, deepmath)."""
    if df.empty:
        return df.reset_index(drop=True)
    d = {v: i for i, v in enumerate(dataset_order(df["dataset"]))}
    c = {v: i for i, v in enumerate(config_order(df["config"]))}
    order = sorted(range(len(df)), key=lambda i: (d[df["dataset"].iloc[i]], c[df["config"].iloc[i]]))
    return df.iloc[order].reset_index(drop=True)


def _k_text(df: pd.DataFrame) -> str:
    if "k" not in df.columns or df.empty:
        return "k"
    ks = sorted(set(int(k) for k in df["k"].dropna()))
    return str(ks[0]) if len(ks) == 1 else "k"


def _grouped_bars(
    ax: Any,
    df: pd.DataFrame,
    value: str,
    low: str | None = None,
    high: str | None = None,
    scale: float = 1.0,
    annotate: str | None = None,
) -> None:
    """Bars of ``value`` per dataset (groups) and config (colours), with [low, high] error bars where finite."""
    datasets = dataset_order(df["dataset"])
    configs = config_order(df["config"])
    width = 0.8 / max(len(configs), 1)
    for j, config in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for i, dataset in enumerate(datasets):
            row = df[(df["dataset"] == dataset) & (df["config"] == config)]
            if row.empty or pd.isna(row[value].iloc[0]):
                continue
            y = float(row[value].iloc[0]) * scale
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(y)
            a = float(row[low].iloc[0]) * scale if low and low in row and pd.notna(row[low].iloc[0]) else y
            b = (
                float(row[high].iloc[0]) * scale
                if high and high in row and pd.notna(row[high].iloc[0])
                else y
            )
            lo.append(max(y - a, 0.0))
            hi.append(max(b - y, 0.0))
        if not xs:
            continue
        ax.bar(xs, ys, width=width * 0.95, color=_color(config), label=_label(config), edgecolor="white")
        if any(v > 0 for v in lo + hi):
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#333333", elinewidth=1, capsize=3)
        if annotate:
            for x, y, top in zip(xs, ys, hi, strict=True):
                ax.annotate(
                    annotate.format(y),
                    (x, y + top),
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    xytext=(0, 1.5),
                    textcoords="offset points",
                )
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([_dlabel(d) for d in datasets])
    ax.set_xlim(-0.6, len(datasets) - 0.4)


# ----------------------------------------------------------------------------------------------- figures


def plot_accuracy(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """maj@k per dataset and configuration, with the bootstrap 95% interval as error bars."""
    df = headline(summary)
    if df.empty:
        return None
    with _style():
        fig = _figure(max(5.0, 1.6 * df["dataset"].nunique() + 2.5), 3.8)
        ax = fig.add_subplot()
        _grouped_bars(ax, df, "maj_at_k", "maj_ci_low", "maj_ci_high", scale=100, annotate="{:.0f}")
        k = _k_text(df)
        ax.set_ylabel(f"maj@{k} accuracy (%)")
        ax.set_ylim(0, 110)
        ax.set_title(f"Accuracy (maj@{k}) with 95% bootstrap intervals")
        ax.legend(title="configuration", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, out_dir, FIGURE_FILES["accuracy"])


def plot_output_length(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """Mean output length in model tokens per configuration (bars); total tokens incl. executor output as ticks."""
    df = headline(summary)
    if df.empty or "mean_len_model_tokens" not in df:
        return None
    with _style():
        fig = _figure(max(5.0, 1.6 * df["dataset"].nunique() + 2.5), 3.8)
        ax = fig.add_subplot()
        _grouped_bars(ax, df, "mean_len_model_tokens", annotate="{:,.0f}")
        if "mean_len_total_tokens" in df:
            datasets, configs = dataset_order(df["dataset"]), config_order(df["config"])
            width = 0.8 / max(len(configs), 1)
            xs, ys = [], []
            for j, config in enumerate(configs):
                for i, dataset in enumerate(datasets):
                    row = df[(df["dataset"] == dataset) & (df["config"] == config)]
                    if row.empty or pd.isna(row["mean_len_total_tokens"].iloc[0]):
                        continue
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(float(row["mean_len_total_tokens"].iloc[0]))
            if xs:
                ax.scatter(xs, ys, marker="_", s=160, color="black", label="total (with executor output)")
        ax.set_ylabel("mean output length (model tokens)")
        ax.set_ylim(0, None)
        ax.set_title("Output length per configuration")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, out_dir, FIGURE_FILES["length"])


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


def plot_length_reduction(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """Length reduction against the baseline (%, positive = shorter), per dataset and configuration."""
    red = length_reduction(summary)
    if red.empty:
        return None
    with _style():
        fig = _figure(max(5.0, 1.6 * red["dataset"].nunique() + 2.5), 3.6)
        ax = fig.add_subplot()
        _grouped_bars(ax, red, "reduction_pct", annotate="{:.0f}%")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("length reduction vs baseline (%)")
        ax.set_title("Output length reduction against the baseline (model tokens)")
        ax.legend(title="configuration", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, out_dir, FIGURE_FILES["reduction"])


def plot_accuracy_vs_length(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """One point per dataset x configuration: mean length (x) against maj@k (y), with the interval as error bar."""
    df = headline(summary)
    if df.empty or "mean_len_model_tokens" not in df:
        return None
    from matplotlib.lines import Line2D

    datasets, configs = dataset_order(df["dataset"]), config_order(df["config"])
    markers = {d: DATASET_MARKERS[i % len(DATASET_MARKERS)] for i, d in enumerate(datasets)}
    with _style():
        fig = _figure(6.8, 4.2)
        ax = fig.add_subplot()
        for _, r in df.sort_values(["dataset", "config"]).iterrows():
            x, y = float(r["mean_len_model_tokens"]), 100 * float(r["maj_at_k"])
            lo = 100 * float(r["maj_ci_low"]) if "maj_ci_low" in r and pd.notna(r["maj_ci_low"]) else y
            hi = 100 * float(r["maj_ci_high"]) if "maj_ci_high" in r and pd.notna(r["maj_ci_high"]) else y
            ax.errorbar(
                [x],
                [y],
                yerr=[[max(y - lo, 0)], [max(hi - y, 0)]],
                fmt=markers[r["dataset"]],
                markersize=8,
                color=_color(r["config"]),
                ecolor=_color(r["config"]),
                capsize=3,
                markeredgecolor="black",
            )
        handles = [
            Line2D([], [], color=_color(c), marker="o", linestyle="", label=_label(c)) for c in configs
        ]
        handles += [
            Line2D([], [], color="#555555", marker=markers[d], linestyle="", label=_dlabel(d))
            for d in datasets
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_xlabel("mean output length (model tokens)")
        ax.set_ylabel(f"maj@{_k_text(df)} accuracy (%)")
        ax.set_title("Accuracy against output length (up-left is better)")
        return _save(fig, out_dir, FIGURE_FILES["acc_vs_len"])


def plot_maj_curve(curve: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """maj@k against k (1..K) per configuration, one panel per dataset, with the interval as a band."""
    if curve is None or curve.empty:
        return None
    df = curve.copy()
    df["dataset"], df["config"] = df["dataset"].astype(str), df["config"].astype(str)
    from matplotlib.ticker import MaxNLocator

    datasets, configs = dataset_order(df["dataset"]), config_order(df["config"])
    ncols = min(len(datasets), 4)
    nrows = math.ceil(len(datasets) / ncols)
    with _style():
        fig = _figure(3.4 * ncols + 1.4, 3.1 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for idx, dataset in enumerate(datasets):
            ax = axes[idx // ncols][idx % ncols]
            for config in configs:
                part = df[(df["dataset"] == dataset) & (df["config"] == config)].sort_values("k")
                if part.empty:
                    continue
                ax.plot(
                    part["k"],
                    100 * part["maj_at_k"],
                    marker="o",
                    markersize=3,
                    color=_color(config),
                    label=_label(config),
                )
                if {"ci_low", "ci_high"} <= set(part.columns) and part[
                    ["ci_low", "ci_high"]
                ].notna().all().all():
                    ax.fill_between(
                        part["k"],
                        100 * part["ci_low"],
                        100 * part["ci_high"],
                        color=_color(config),
                        alpha=0.15,
                    )
            ax.set_title(_dlabel(dataset))
            ax.set_xlabel("k (samples voted)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if idx % ncols == 0:
                ax.set_ylabel("maj@k accuracy (%)")
        for idx in range(len(datasets), nrows * ncols):
            axes[idx // ncols][idx % ncols].set_visible(False)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
        fig.suptitle("Majority vote accuracy against the number of samples", fontweight="bold")
        return _save(fig, out_dir, FIGURE_FILES["maj_curve"])


def records_frame(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Sample records as a DataFrame (the record keys as columns)."""
    return records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))


def plot_tool_calls(
    records: list[dict] | pd.DataFrame, out_dir: str | Path, max_calls: int = 10
) -> Path | None:
    """Distribution of tool calls per trajectory, per configuration (share of trajectories; ``max_calls``+ pooled)."""
    df = records_frame(records)
    if df.empty or "n_calls" not in df or "config" not in df:
        return None
    df = df.dropna(subset=["n_calls"]).copy()
    df["config"] = df["config"].astype(str)
    df["calls"] = df["n_calls"].astype(int).clip(upper=max_calls)
    configs = config_order(df["config"])
    bins = list(range(0, int(df["calls"].max()) + 1))
    with _style():
        fig = _figure(max(5.5, 0.45 * len(bins) + 3.5), 3.6)
        ax = fig.add_subplot()
        width = 0.8 / max(len(configs), 1)
        for j, config in enumerate(configs):
            part = df[df["config"] == config]
            share = part["calls"].value_counts(normalize=True).reindex(bins, fill_value=0.0)
            xs = [b - 0.4 + width * (j + 0.5) for b in bins]
            label = f"{_label(config)} (mean {part['n_calls'].mean():.2f}, n={len(part)})"
            ax.bar(xs, 100 * share.to_numpy(), width=width * 0.95, color=_color(config), label=label)
        ax.set_xticks(bins)
        ax.set_xticklabels([f"{b}+" if b == max_calls else str(b) for b in bins])
        ax.set_xlabel("tool calls in the trajectory")
        ax.set_ylabel("share of trajectories (%)")
        ax.set_title("Tool calls per trajectory")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _save(fig, out_dir, FIGURE_FILES["tool_calls"])


# ----------------------------------------------------------------------------------------------- example trace

_SEGMENT_RE = re.compile(
    r"(?P<code><tool_call>.*?(?:</tool_call>|$))|(?P<pycode>```python\n.*?(?:```|$))|(?P<output>```output\n.*?(?:```|$))",
    re.DOTALL,
)


def split_trace(text: str) -> list[tuple[str, str]]:
    """Split a trace into ``(kind, text)`` segments: ``text``, ``code`` (tool-call or python block), ``output``."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _SEGMENT_RE.finditer(text):
        if m.start() > pos:
            out.append(("text", text[pos : m.start()]))
        kind = "output" if m.group("output") else "code"
        out.append((kind, m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append(("text", text[pos:]))
    return out


def pick_example(records: list[dict] | pd.DataFrame) -> dict | None:
    """A correct deepmath sample with at least one call (shortest text; ties by dataset, problem, sample); failing
    that a correct agent sample with calls, then any sample with calls."""
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


def _trace_lines(text: str, width: int, max_text_run: int, max_lines: int) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for kind, seg in split_trace(text):
        seg_lines: list[str] = []
        for raw in seg.strip("\n").split("\n") if kind != "text" else seg.strip().split("\n"):
            wrapped = textwrap.wrap(raw.expandtabs(4), width, replace_whitespace=False, drop_whitespace=False)
            seg_lines.extend(wrapped or [""])
        if kind == "text":
            seg_lines = [ln for ln in seg_lines if ln.strip()]
            if len(seg_lines) > max_text_run:
                head = max_text_run // 2
                tail = max_text_run - head - 1
                cut = len(seg_lines) - head - tail
                seg_lines = seg_lines[:head] + [f"[... {cut} lines of reasoning ...]"] + seg_lines[-tail:]
        lines.extend((kind, ln) for ln in seg_lines)
    if len(lines) > max_lines:
        head = max_lines // 3
        tail = max_lines - head - 1
        lines = lines[:head] + [("text", f"[... {len(lines) - head - tail} lines ...]")] + lines[-tail:]
    return lines


def plot_example_trace(
    records: list[dict] | pd.DataFrame,
    out_dir: str | Path,
    record: dict | None = None,
    width: int = 96,
    max_lines: int = 60,
) -> Path | None:
    """A trace rendered like the blog's example: reasoning in black, code on blue, executor output on green, the
    boxed answer highlighted. Uses ``record`` when given, else ``pick_example(records)``."""
    rec = record if record is not None else pick_example(records)
    if rec is None or not rec.get("text"):
        return None
    from matplotlib.patches import Rectangle

    lines = _trace_lines(str(rec["text"]), width, max_text_run=8, max_lines=max_lines)
    colours = {"text": "#222222", "code": "#1f4e9c", "output": "#1b6e2f"}
    backgrounds = {"code": "#e8f0fc", "output": "#e9f6ea"}
    line_h = 0.16
    with _style():
        fig = _figure(9.0, 0.6 + line_h * (len(lines) + 2))
        ax = fig.add_subplot()
        ax.set_axis_off()
        total = len(lines) + 1
        ax.set_xlim(0, 1)
        ax.set_ylim(total, 0)
        for i, (kind, line) in enumerate(lines):
            y = i + 1
            if kind in backgrounds:
                ax.add_patch(Rectangle((0, y - 0.5), 1, 1, color=backgrounds[kind], linewidth=0, zorder=0))
            bbox = None
            if "\\boxed{" in line:
                bbox = {"facecolor": "#ffe066", "edgecolor": "#c99a00", "boxstyle": "round,pad=0.2"}
            ax.text(
                0.01,
                y,
                line,
                family="monospace",
                fontsize=7.5,
                color=colours[kind],
                va="center",
                ha="left",
                parse_math=False,
                bbox=bbox,
                zorder=2,
            )
        verdict = {True: "correct", False: "wrong"}.get(rec.get("correct"), "ungraded")
        title = (
            f"{_dlabel(str(rec.get('dataset', '')))} / {_label(str(rec.get('config', '')))} / "
            f"problem {rec.get('problem_id', '?')} sample {rec.get('sample', '?')}: {rec.get('n_calls', 0)} call(s), "
            f"answer {rec.get('pred')!s} ({verdict}, gold {rec.get('gold')!s})"
        )
        ax.set_title(textwrap.shorten(title, 130), loc="left", fontsize=9, parse_math=False)
        return _save(fig, out_dir, FIGURE_FILES["trace"])


# ----------------------------------------------------------------------------------------------- reference


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
    return _sorted(ours.merge(ref, on=["dataset", "config"], how="outer"))


def side_by_side(summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """A wide table, one row per configuration: ours per dataset (maj@k %, its 95% interval, mean model tokens),
    then the original's per dataset (maj@16 %, mean tokens). Readable even when no dataset is shared (nano)."""
    cols: dict[tuple[str, str], pd.Series] = {}
    ours = headline(summary) if summary is not None and not summary.empty else pd.DataFrame()
    for d in dataset_order(ours["dataset"]) if not ours.empty else []:
        sub = ours[ours["dataset"] == d].set_index("config")
        k = _k_text(sub)
        cols[(f"ours: {_dlabel(d)}", f"maj@{k} %")] = (100 * sub["maj_at_k"]).round(1)
        if {"maj_ci_low", "maj_ci_high"} <= set(sub.columns):
            cols[(f"ours: {_dlabel(d)}", "95% CI")] = sub.apply(
                lambda r: (
                    f"{100 * r['maj_ci_low']:.0f}-{100 * r['maj_ci_high']:.0f}"
                    if pd.notna(r["maj_ci_low"]) and pd.notna(r["maj_ci_high"])
                    else ""
                ),
                axis=1,
            )
        cols[(f"ours: {_dlabel(d)}", "tokens")] = sub["mean_len_model_tokens"].round(0)
    for d in dataset_order(reference["dataset"]):
        sub = reference[reference["dataset"] == d].set_index("config")
        cols[(f"original: {_dlabel(d)}", "maj@16 %")] = (100 * sub["maj_at_16"]).round(2)
        cols[(f"original: {_dlabel(d)}", "tokens")] = sub["mean_tokens"]
    if not cols:
        return pd.DataFrame()
    table = pd.DataFrame(cols)
    table = table.reindex(config_order(table.index))
    table.index = [_label(c) for c in table.index]
    table.index.name = "configuration"
    return table


def plot_reference_comparison(
    summary: pd.DataFrame, reference: pd.DataFrame, out_dir: str | Path
) -> Path | None:
    """The original's table (left) beside ours (right): accuracy (top) and mean length (bottom). When no dataset is
    shared (nano), the original is a reference panel for the shape of the result, not for the numbers."""
    if reference is None or reference.empty:
        return None
    ours = headline(summary) if summary is not None and not summary.empty else pd.DataFrame()
    ref = reference.rename(columns={"maj_at_16": "maj_at_k", "mean_tokens": "mean_len_model_tokens"}).copy()
    shared = sorted(set(ref["dataset"]) & set(ours["dataset"])) if not ours.empty else []
    with _style():
        fig = _figure(12.0, 6.8)
        axes = fig.subplots(2, 2, squeeze=False)
        panels = [
            (ref, "Original (blog, maj@16)"),
            (
                ours,
                f"Ours ({', '.join(_dlabel(d) for d in dataset_order(ours['dataset']))})"
                if not ours.empty
                else "Ours (no results)",
            ),
        ]
        for col, (df, name) in enumerate(panels):
            acc, length = axes[0][col], axes[1][col]
            if df.empty:
                acc.set_axis_off()
                length.set_axis_off()
                continue
            _grouped_bars(acc, df, "maj_at_k", "maj_ci_low", "maj_ci_high", scale=100, annotate="{:.0f}")
            acc.set_ylim(0, 110)
            acc.set_ylabel("accuracy (%)")
            acc.set_title(f"{name}: accuracy")
            _grouped_bars(length, df, "mean_len_model_tokens", annotate="{:,.0f}")
            length.set_ylabel("mean output tokens")
            length.set_title(f"{name}: output length")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
        note = (
            f"shared datasets: {', '.join(_dlabel(d) for d in shared)}"
            if shared
            else "no shared dataset: compare the shape (the agent shortens outputs; GRPO + agent most accurate), "
            "not the numbers"
        )
        fig.suptitle(f"The original's reported table beside ours ({note})", fontweight="bold", fontsize=10)
        return _save(fig, out_dir, FIGURE_FILES["reference"])


def plot_training_curves(train: pd.DataFrame, out_dir: str | Path, window: int = 5) -> Path | None:
    """GRPO training log per step: rewards, code use, accuracy, length and temperature (raw and rolling mean)."""
    if train is None or train.empty or "step" not in train:
        return None
    cols = [c for c in TRAIN_COLUMNS if c in train and train[c].notna().any()]
    if not cols:
        return None
    ncols = min(len(cols), 4)
    nrows = math.ceil(len(cols) / ncols)
    df = train.sort_values("step")
    with _style():
        fig = _figure(3.2 * ncols, 2.6 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for idx, col in enumerate(cols):
            ax = axes[idx // ncols][idx % ncols]
            ax.plot(df["step"], df[col], color="#bbbbbb", linewidth=0.8)
            if len(df) >= window and col != "temperature":
                ax.plot(
                    df["step"], df[col].rolling(window, min_periods=1).mean(), color="#4e79a7", linewidth=1.6
                )
            ax.set_title(col.replace("_", " "))
            ax.set_xlabel("step")
        for idx in range(len(cols), nrows * ncols):
            axes[idx // ncols][idx % ncols].set_visible(False)
        fig.suptitle(f"GRPO training (grey: per step, blue: rolling mean over {window})", fontweight="bold")
        return _save(fig, out_dir, FIGURE_FILES["training"])


# ----------------------------------------------------------------------------------------------- drivers


def _maj_curve_from(records: list[dict]) -> pd.DataFrame | None:
    try:
        from .metrics import maj_curve
    except ImportError as exc:
        print(f"figures: maj@k curve skipped (deepmath_lib.metrics unavailable: {exc})", file=sys.stderr)
        return None
    return maj_curve(records)


def make_all_figures(
    profile: str = "nano",
    results_root: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> list[Path]:
    """Draw every figure the results allow; returns the saved paths (in a fixed order).

    Reads ``<results_root>/<profile>/eval_summary.csv`` (required), ``samples/*.jsonl``, ``maj_curve.csv`` (else the
    curve is computed from the samples with ``deepmath_lib.metrics.maj_curve``) and ``train_metrics.csv``.
    Raises FileNotFoundError when there is no eval summary. A figure that fails is reported and skipped.
    """
    from .paths import REPO_ROOT

    res = profile_results_dir(profile, results_root)
    out = Path(figures_dir) if figures_dir is not None else REPO_ROOT / "figures"
    summary_path = res / "eval_summary.csv"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"no eval summary at {summary_path}; run `deepmath eval --profile {profile}` first"
        )
    summary = pd.read_csv(summary_path)
    samples = res / "samples"
    records = read_records(samples) if samples.is_dir() else []
    curve = None
    if (res / "maj_curve.csv").is_file():
        curve = pd.read_csv(res / "maj_curve.csv")
    elif records:
        try:
            curve = _maj_curve_from(records)
        except Exception as exc:  # a figure is not worth failing the run for; say why
            print(f"figures: maj@k curve skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    train = pd.read_csv(res / "train_metrics.csv") if (res / "train_metrics.csv").is_file() else None
    try:
        reference = load_reference()
    except (ValueError, OSError) as exc:
        print(f"figures: original's table unavailable ({exc})", file=sys.stderr)
        reference = None

    jobs = [
        ("accuracy", lambda: plot_accuracy(summary, out)),
        ("output length", lambda: plot_output_length(summary, out)),
        ("length reduction", lambda: plot_length_reduction(summary, out)),
        ("accuracy vs length", lambda: plot_accuracy_vs_length(summary, out)),
        ("maj@k curve", lambda: plot_maj_curve(curve, out) if curve is not None else None),
        ("tool calls", lambda: plot_tool_calls(records, out) if records else None),
        ("example trace", lambda: plot_example_trace(records, out) if records else None),
        (
            "original vs ours",
            lambda: plot_reference_comparison(summary, reference, out) if reference is not None else None,
        ),
        ("training curves", lambda: plot_training_curves(train, out) if train is not None else None),
    ]
    saved: list[Path] = []
    for name, job in jobs:
        try:
            path = job()
        except Exception as exc:
            print(f"figures: {name} skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        if path is not None:
            saved.append(path)
    return saved


def figures_main(
    profile: str = "nano", results_root: str | None = None, figures_dir: str | None = None
) -> int:
    """CLI entry (``deepmath figures``): draw what the results allow, print the saved files; 1 without a summary."""
    try:
        saved = make_all_figures(profile, results_root, figures_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"figures: {len(saved)} file(s) saved")
    for path in saved:
        print(f"  {path}")
    return 0
