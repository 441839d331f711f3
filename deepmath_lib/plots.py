"""Figures from the evaluation results (notebook 05, ``deepmath figures``); the tables they draw are in ``tables.py``.

Every ``plot_*`` function takes DataFrames (or record lists, or a dict) and an output folder, saves one PNG there and
returns its path (None when its inputs hold nothing to draw). Figures are drawn on ``matplotlib.figure.Figure``
objects (no pyplot state, any backend) with fixed sizes, orders and colours, so the same inputs give the same files.
Titles are wrapped to the canvas and legends sit beside or below the axes, never on a title.

Inputs: ``eval_summary.csv``, the sample records, a maj-curve table (``dataset, config, k, maj_at_k, ci_low,
ci_high``), the original's table, ``train_metrics.csv`` and the sandbox benchmark (``deepmath bench sandbox``).
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import metrics
from .bench import load as load_bench
from .datasets import load_reference
from .lazy import LazyModule
from .paths import figures_dir as default_figures_dir
from .profiles import DEFAULT_PROFILE, Profile, get_profile
from .results import TRAIN_METRICS_COLUMNS, profile_results_dir, read_records
from .tables import (
    config_label,
    config_order,
    dataset_order,
    dataset_short_label,
    headline,
    k_text,
    length_reduction,
    pick_example,
    records_frame,
)
from .trace import trace_parts

pd = LazyModule("pandas")  # imported on first use: see lazy.py

CONFIG_COLORS = {"baseline": "#8c8c8c", "agent": "#f28e2b", "grpo": "#4e79a7", "deepmath": "#59a14f"}
DATASET_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
TRAIN_LABELS = {
    "reward": "total reward",
    "reward_accuracy": "accuracy reward",
    "reward_code": "code reward (a snippet ran)",
    "mean_model_tokens": "mean model tokens",
    "temperature": "sampling temperature",
}
EXECUTOR_LABELS = {
    "bare_exec": "bare exec (no isolation)",
    "sandbox": "our sandbox",
    "smolagents": "smolagents LocalPythonExecutor",
    "process_per_snippet": "a new process per snippet",
}
EXECUTOR_COLORS = {
    "bare_exec": "#8c8c8c",
    "sandbox": "#59a14f",
    "smolagents": "#f28e2b",
    "process_per_snippet": "#e15759",
}
SNIPPET_LABELS = {
    "trivial": "trivial (x = 1 + 1)",
    "sympy_solve": "sympy.solve",
    "loop_1e5": "1e5-iteration loop",
}
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
    "sandbox": "sandbox_latency.png",
    "comparisons": "comparisons.png",
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


def _title(fig: Any, text: str, note: str = "") -> None:
    """A bold figure title wrapped to the figure's width, and an optional note under it: in plain type above a
    single untitled axes, else as the title's second line (the panels have titles of their own)."""
    chars = int(fig.get_figwidth() * 9.5)  # ~7.5 pt per bold character at 11 pt, with a margin
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if note and len(axes) == 1 and not axes[0].get_title():
        axes[0].set_title(
            textwrap.fill(note, int(chars * 1.3)), fontsize=9, fontweight="normal", color="#444444"
        )
        note = ""
    title = textwrap.fill(text, chars) + ("\n" + textwrap.fill(note, int(chars * 1.1)) if note else "")
    fig.suptitle(title, fontweight="bold", fontsize=11 if not note else 10)


def _legend_below(
    fig: Any, handles: list, labels: list[str], title: str | None = None, ncols: int = 4
) -> None:
    """One legend for the whole figure, under the axes (clear of the title), in up to ``ncols`` columns."""
    ncols = min(len(labels), ncols)
    fig.legend(handles, labels, title=title, loc="outside lower center", ncols=ncols, frameon=False)


def _save(fig: Any, out_dir: str | Path, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _color(config: str) -> str:
    if config in CONFIG_COLORS:
        return CONFIG_COLORS[config]
    extra = ["#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
    return extra[sum(map(ord, config)) % len(extra)]


def _annotate_bar(ax: Any, x: float, y: float, above: float, below: float, text: str) -> None:
    """A value label past the end of a bar: above a positive bar (and its error bar), below a negative one."""
    up = y >= 0
    ax.annotate(
        text,
        (x, y + above if up else y - below),
        ha="center",
        va="bottom" if up else "top",
        fontsize=6.5,
        xytext=(0, 1.5 if up else -1.5),
        textcoords="offset points",
    )


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
            a = float(row[low].iloc[0]) * scale if low and low in row and pd.notna(row[low].iloc[0]) else y
            b = (
                float(row[high].iloc[0]) * scale
                if high and high in row and pd.notna(row[high].iloc[0])
                else y
            )
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(y)
            lo.append(max(y - a, 0.0))
            hi.append(max(b - y, 0.0))
        if not xs:
            continue
        ax.bar(
            xs, ys, width=width * 0.95, color=_color(config), label=config_label(config), edgecolor="white"
        )
        if any(v > 0 for v in lo + hi):
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#333333", elinewidth=1, capsize=3)
        if annotate:
            for x, y, down, up in zip(xs, ys, lo, hi, strict=True):
                _annotate_bar(ax, x, y, up, down, annotate.format(y))
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([dataset_short_label(d) for d in datasets])
    ax.set_xlim(-0.6, len(datasets) - 0.4)


def _bar_figure_width(df: pd.DataFrame) -> float:
    return max(5.5, 1.6 * df["dataset"].nunique() + 3.0)


# ----------------------------------------------------------------------------------------------- summary figures


def plot_accuracy(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """maj@k per dataset and configuration, with the bootstrap 95% interval as error bars."""
    df = headline(summary)
    if df.empty:
        return None
    k = k_text(df)
    with _style():
        fig = _figure(_bar_figure_width(df), 3.9)
        ax = fig.add_subplot()
        _grouped_bars(ax, df, "maj_at_k", "maj_ci_low", "maj_ci_high", scale=100, annotate="{:.0f}")
        ax.set_ylabel(f"maj@{k} accuracy (%)")
        ax.set_ylim(0, 110)
        ax.legend(title="configuration", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _title(fig, f"Accuracy (maj@{k}) with 95% bootstrap intervals")
        return _save(fig, out_dir, FIGURE_FILES["accuracy"])


def plot_output_length(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """Mean output length in model tokens per configuration (bars); total tokens incl. executor output as ticks."""
    df = headline(summary)
    if df.empty or "mean_len_model_tokens" not in df:
        return None
    with _style():
        fig = _figure(_bar_figure_width(df) + 0.8, 3.9)
        ax = fig.add_subplot()
        _grouped_bars(ax, df, "mean_len_model_tokens", annotate="{:,.0f}")
        if "mean_len_total_tokens" in df:
            datasets, configs = dataset_order(df["dataset"]), config_order(df["config"])
            width = 0.8 / max(len(configs), 1)
            # a tick only where executor output adds tokens; elsewhere it would sit on the bar's top
            more = df[df["mean_len_total_tokens"] > df["mean_len_model_tokens"] + 0.5]
            xs = [
                datasets.index(r.dataset) - 0.4 + width * (configs.index(r.config) + 0.5)
                for r in more.itertuples()
            ]
            if xs:
                ax.scatter(
                    xs, more["mean_len_total_tokens"], marker="_", s=160, color="black",
                    label="total, with executor output",
                )  # fmt: skip
        ax.set_ylabel("mean output length (model tokens)")
        ax.set_ylim(0, None)
        ax.margins(y=0.08)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _title(fig, "Output length per configuration")
        return _save(fig, out_dir, FIGURE_FILES["length"])


def plot_length_reduction(summary: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """Length reduction against the baseline (%, positive = shorter), per dataset and configuration."""
    red = length_reduction(summary)
    if red.empty:
        return None
    with _style():
        fig = _figure(_bar_figure_width(red), 3.9)
        ax = fig.add_subplot()
        _grouped_bars(ax, red, "reduction_pct", annotate="{:.0f}%")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.margins(y=0.12)
        ax.set_ylabel("length reduction vs baseline (%)")
        ax.legend(title="configuration", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _title(
            fig,
            "Output length reduction against the baseline",
            "in model tokens; below zero: longer than the baseline",
        )
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
        fig = _figure(7.0, 4.2)
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
            Line2D([], [], color=_color(c), marker="o", linestyle="", label=config_label(c)) for c in configs
        ]
        if len(datasets) > 1:  # one marker per dataset; a single dataset names the legend instead
            handles += [
                Line2D([], [], color="#555555", marker=markers[d], linestyle="", label=dataset_short_label(d))
                for d in datasets
            ]
        title = dataset_short_label(datasets[0]) if len(datasets) == 1 else None
        ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_xlabel("mean output length (model tokens)")
        ax.set_ylabel(f"maj@{k_text(df)} accuracy (%)")
        _title(fig, "Accuracy against output length (up-left is better)")
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
        fig = _figure(max(3.6 * ncols, 5.5), 3.1 * nrows + 0.9)
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
                    label=config_label(config),
                )
                bounds = part[["ci_low", "ci_high"]] if {"ci_low", "ci_high"} <= set(part.columns) else None
                if bounds is not None and bounds.notna().all().all():
                    ax.fill_between(
                        part["k"],
                        100 * part["ci_low"],
                        100 * part["ci_high"],
                        color=_color(config),
                        alpha=0.15,
                    )
            ax.set_title(dataset_short_label(dataset))
            ax.set_xlabel("k (samples voted)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if idx % ncols == 0:
                ax.set_ylabel("maj@k accuracy (%)")
        for idx in range(len(datasets), nrows * ncols):
            axes[idx // ncols][idx % ncols].set_visible(False)
        _legend_below(fig, *axes[0][0].get_legend_handles_labels())
        _title(fig, "Majority-vote accuracy against the number of samples", "bands: 95% bootstrap intervals")
        return _save(fig, out_dir, FIGURE_FILES["maj_curve"])


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
        fig = _figure(max(6.0, 0.45 * len(bins) + 4.0), 3.8)
        ax = fig.add_subplot()
        width = 0.8 / max(len(configs), 1)
        for j, config in enumerate(configs):
            part = df[df["config"] == config]
            share = part["calls"].value_counts(normalize=True).reindex(bins, fill_value=0.0)
            xs = [b - 0.4 + width * (j + 0.5) for b in bins]
            label = f"{config_label(config)} (mean {part['n_calls'].mean():.2f}, n={len(part)})"
            ax.bar(xs, 100 * share.to_numpy(), width=width * 0.95, color=_color(config), label=label)
        ax.set_xticks(bins)
        ax.set_xticklabels([f"{b}+" if b == max_calls else str(b) for b in bins])
        ax.set_xlabel("tool calls in the trajectory")
        ax.set_ylabel("share of trajectories (%)")
        ax.legend(title="configuration", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _title(fig, "Tool calls per trajectory")
        return _save(fig, out_dir, FIGURE_FILES["tool_calls"])


# ----------------------------------------------------------------------------------------------- example trace


def _trace_lines(
    text: str, profile: Profile, width: int, max_text_run: int, max_lines: int
) -> list[tuple[str, str]]:
    """The trace as (kind, line) pairs wrapped to ``width``; long runs of reasoning and long traces are cut in the
    middle, with a line saying how much was left out."""
    lines: list[tuple[str, str]] = []
    for kind, seg in trace_parts(text, profile):
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
    profile: Profile,
    record: dict | None = None,
    width: int = 96,
    max_lines: int = 60,
) -> Path | None:
    """A trace rendered like the blog's example: reasoning in black, code on blue, executor output on green, the
    boxed answer highlighted; the trace is split with the ``profile``'s call format. Uses ``record`` when given,
    else ``tables.pick_example(records)``."""
    rec = record if record is not None else pick_example(records)
    if rec is None or not rec.get("text"):
        return None
    from matplotlib.patches import Rectangle

    lines = _trace_lines(str(rec["text"]), profile, width, max_text_run=8, max_lines=max_lines)
    colours = {"text": "#222222", "code": "#1f4e9c", "output": "#1b6e2f"}
    backgrounds = {"code": "#e8f0fc", "output": "#e9f6ea"}
    calls = int(rec.get("n_calls") or 0)
    verdict = {True: "correct", False: "wrong"}.get(rec.get("correct"), "ungraded")
    head = (
        f"{dataset_short_label(str(rec.get('dataset', '')))} · {config_label(str(rec.get('config', '')))} · "
        f"problem {rec.get('problem_id', '?')}, sample {rec.get('sample', '?')} · {calls} call{'s' * (calls != 1)} "
        f"· answer {rec.get('pred')!s} ({verdict}; gold {rec.get('gold')!s})"
    )
    title = textwrap.shorten(head, 115)
    if rec.get("problem"):
        title += "\n" + textwrap.shorten(f"Problem: {rec['problem']}", 115)
    line_h = 0.16
    with _style():
        fig = _figure(9.0, 0.8 + line_h * (len(lines) + 2))
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
        ax.set_title(title, loc="left", fontsize=9, parse_math=False)
        return _save(fig, out_dir, FIGURE_FILES["trace"])


# ----------------------------------------------------------------------------------------------- reference


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
    ours_name = (
        f"Ours: {', '.join(dataset_short_label(d) for d in dataset_order(ours['dataset']))}, maj@{k_text(ours)}"
        if not ours.empty
        else "Ours: no results yet"
    )
    with _style():
        fig = _figure(12.0, 7.4)
        axes = fig.subplots(2, 2, squeeze=False)
        for col, (df, name) in enumerate([(ref, "Original (blog post), maj@16"), (ours, ours_name)]):
            acc, length = axes[0][col], axes[1][col]
            acc.set_title(name)
            if df.empty:
                acc.set_axis_off()
                length.set_axis_off()
                continue
            _grouped_bars(acc, df, "maj_at_k", "maj_ci_low", "maj_ci_high", scale=100, annotate="{:.0f}")
            acc.set_ylim(0, 112)
            acc.set_ylabel("accuracy (%)")
            _grouped_bars(length, df, "mean_len_model_tokens", annotate="{:,.0f}")
            length.margins(y=0.1)
            length.set_ylabel("mean output tokens")
        _legend_below(fig, *axes[0][0].get_legend_handles_labels(), title="configuration")
        note = (
            f"shared datasets: {', '.join(dataset_short_label(d) for d in shared)}"
            if shared
            else "No dataset is shared: compare the shape (the agent shortens outputs; GRPO + agent is the most "
            "accurate), not the numbers."
        )
        _title(fig, "The original's reported table (left) beside ours (right)", note)
        return _save(fig, out_dir, FIGURE_FILES["reference"])


# ----------------------------------------------------------------------------------------------- training, sandbox


def plot_training_curves(train: pd.DataFrame, out_dir: str | Path, window: int = 5) -> Path | None:
    """GRPO training log per step, one panel per logged metric (``results.TRAIN_METRICS_COLUMNS`` present in
    ``train``): rewards, length and temperature, raw and as a rolling mean."""
    if train is None or train.empty or "step" not in train:
        return None
    cols = [c for c in TRAIN_METRICS_COLUMNS if c in train and train[c].notna().any()]
    if not cols:
        return None
    timed = all(c in train and train[c].notna().all() for c in ("rollout_s", "reward_s", "optimizer_s"))
    panels = len(cols) + timed
    ncols = min(panels, 3)
    nrows = math.ceil(panels / ncols)
    df = train.sort_values("step")
    with _style():
        fig = _figure(3.3 * ncols, 2.6 * nrows + 0.5)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for idx, col in enumerate(cols):
            ax = axes[idx // ncols][idx % ncols]
            ax.plot(df["step"], df[col], color="#bbbbbb", linewidth=0.8)
            if len(df) >= window and col != "temperature":
                ax.plot(
                    df["step"], df[col].rolling(window, min_periods=1).mean(), color="#4e79a7", linewidth=1.6
                )
            ax.set_title(TRAIN_LABELS.get(col, col.replace("_", " ")))
            ax.set_xlabel("step")
        if timed:  # where each step's wall time went, stacked
            ax = axes[len(cols) // ncols][len(cols) % ncols]
            parts = (
                ("rollout_s", "rollouts", "#f28e2b"),
                ("reward_s", "rewards", "#e15759"),
                ("optimizer_s", "fwd + bwd + optimizer", "#4e79a7"),
            )
            ax.stackplot(
                df["step"],
                *[df[c] for c, _, _ in parts],
                labels=[lab for _, lab, _ in parts],
                colors=[col for _, _, col in parts],
                alpha=0.85,
            )
            ax.set_title("seconds per step")
            ax.set_xlabel("step")
            ax.legend(loc="lower left", fontsize=7, frameon=True)
        for idx in range(panels, nrows * ncols):
            axes[idx // ncols][idx % ncols].set_visible(False)
        _title(fig, "GRPO training", f"grey: per step; blue: rolling mean over {window} steps")
        return _save(fig, out_dir, FIGURE_FILES["training"])


def _ms_text(ms: float) -> str:
    """A latency as a reader would write it: 0.4 µs, 180 µs, 8.1 ms, 1,390 ms."""
    if ms < 1:
        return f"{ms * 1e3:.1f} µs" if ms < 1e-2 else f"{ms * 1e3:.0f} µs"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def plot_sandbox_latency(bench: dict, out_dir: str | Path) -> Path | None:
    """Median latency per snippet and executor on a log scale, from ``deepmath_lib.bench.sandbox.measure()``'s dict
    (``{"latency_ms": {executor: {snippet: ms}}, "creation_ms": ms, ...}``; other keys are ignored). None when it
    holds no finite latency."""
    lat = (bench or {}).get("latency_ms") or {}
    rows = [
        (e, s, float(ms))
        for e, per in lat.items()
        for s, ms in (per or {}).items()
        if ms is not None and math.isfinite(float(ms)) and float(ms) > 0
    ]
    if not rows:
        return None
    executors = [e for e in lat if any(r[0] == e for r in rows)]
    snippets = list(dict.fromkeys(s for _, s, _ in rows))
    values = {(e, s): ms for e, s, ms in rows}
    width = 0.8 / len(executors)
    with _style():
        fig = _figure(8.0, 4.4)
        ax = fig.add_subplot()
        for j, e in enumerate(executors):
            xs = [i - 0.4 + width * (j + 0.5) for i, s in enumerate(snippets) if (e, s) in values]
            ys = [values[e, s] for s in snippets if (e, s) in values]
            color = EXECUTOR_COLORS.get(e, "#76b7b2")
            ax.bar(xs, ys, width=width * 0.95, color=color, label=EXECUTOR_LABELS.get(e, e.replace("_", " ")))
            for x, y in zip(xs, ys, strict=True):
                _annotate_bar(ax, x, y, 0.0, 0.0, _ms_text(y))
        ax.set_yscale("log")
        ax.margins(y=0.12)
        ax.set_xticks(range(len(snippets)))
        ax.set_xticklabels([SNIPPET_LABELS.get(s, s.replace("_", " ")) for s in snippets])
        ax.set_ylabel("median latency (ms)")
        _legend_below(fig, *ax.get_legend_handles_labels(), ncols=2)
        creation = bench.get("creation_ms")
        note = "log scale" + (
            f"; a new sandbox (forked from the warm zygote) takes {_ms_text(float(creation))}"
            if creation
            else ""
        )
        _title(fig, "Median snippet latency per executor", note)
        return _save(fig, out_dir, FIGURE_FILES["sandbox"])


# ----------------------------------------------------------------------------------------------- drivers


PROFILE_LABELS = {"nano": "nano (0.68M, built here)", "smol": "smol (SmolLM2-135M-Instruct)"}


def plot_profiles(
    results_root: str | Path | None, out_dir: str | Path, profiles=("nano", "smol")
) -> Path | None:
    """The profiles side by side: the four configurations' accuracy (left) and GRPO's before/after on held-out
    problems, code use and accuracy (right), each with its 95% interval. Profiles without results are left out."""
    rows, train = [], {}
    for name in profiles:
        res = profile_results_dir(name, results_root)
        if not (res / "eval_summary.csv").is_file():
            continue
        df = headline(pd.read_csv(res / "eval_summary.csv"))
        df = df.assign(
            dataset=f"{PROFILE_LABELS.get(name, name)}\n{dataset_short_label(df.dataset.iloc[0])}, "
            f"maj@{k_text(df)}"
        )
        rows.append(df)
        if (res / "train_summary.json").is_file():
            train[name] = json.loads((res / "train_summary.json").read_text())
    if not rows:
        return None
    summary = pd.concat(rows, ignore_index=True)
    with _style():
        fig = _figure(11.0, 4.2)
        left, right = fig.subplots(1, 2, width_ratios=(1.15, 1))
        _grouped_bars(left, summary, "maj_at_k", "maj_ci_low", "maj_ci_high", scale=100, annotate="{:.0f}")
        left.set_ylabel("accuracy (%)")
        left.set_ylim(0, 128)
        left.set_yticks(range(0, 101, 20))
        left.set_title("Four configurations")
        left.legend(loc="upper left", frameon=False, fontsize=8, ncols=2)
        names = list(train)
        bars = (("code use", "code_use", "#f28e2b"), ("accuracy", "accuracy", "#59a14f"))
        width = 0.2
        for i, name in enumerate(names):
            t = train[name]
            for j, (label, key, color) in enumerate(bars):
                for m, when in enumerate(("before", "after")):
                    x = i + (j * 2 + m - 1.5) * width
                    rate = "code_use_rate" if key == "code_use" else "accuracy"
                    y = 100 * t[f"{rate}_{when}"]
                    lo, hi = (100 * v for v in t[f"{key}_ci_{when}"])
                    right.bar(
                        x,
                        y,
                        width * 0.92,
                        color=color,
                        alpha=0.45 if when == "before" else 1.0,
                        edgecolor="white",
                        label=f"{label} {when}" if i == 0 else None,
                    )
                    right.errorbar(
                        x,
                        y,
                        yerr=[[max(y - lo, 0)], [max(hi - y, 0)]],
                        fmt="none",
                        ecolor="#333333",
                        elinewidth=1,
                        capsize=2,
                    )
                    _annotate_bar(right, x, y, max(hi - y, 0), max(y - lo, 0), f"{y:.0f}")
        right.set_xticks(range(len(names)))
        right.set_xticklabels(
            [
                f"{PROFILE_LABELS.get(n, n)}\n{train[n]['steps']} steps, {train[n]['heldout_problems']} held-out"
                for n in names
            ]
        )
        right.set_xlim(-0.6, len(names) - 0.4)
        right.set_ylim(0, 128)
        right.set_yticks(range(0, 101, 20))
        right.set_ylabel("% of held-out problems")
        right.set_title("GRPO: before → after, same sampling")
        right.legend(loc="upper left", frameon=False, fontsize=8, ncols=2)
        _title(fig, "nano and smol side by side (95% bootstrap intervals)")
        return _save(fig, out_dir, "profiles_side_by_side.png")


def plot_comparisons(comparisons: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """The paired comparisons (``comparisons.csv``) side by side: the accuracy difference (maj@k; greedy: accuracy)
    in points, the model-token and the total-token difference, each a - b per problem with its paired 95%
    bootstrap interval; one row per pair (and dataset). Filled markers: the interval excludes 0."""
    if comparisons is None or comparisons.empty:
        return None
    df = comparisons.reset_index(drop=True)
    k = int(df.k.min())
    many = df.dataset.nunique() > 1
    labels = [
        f"{config_label(r.a)} − {config_label(r.b)}" + (f"\n{dataset_short_label(r.dataset)}" if many else "")
        for r in df.itertuples()
    ]
    panels = (
        ("maj", 100, "accuracy" if k == 1 else f"maj@{k}", "difference (points)"),
        ("model_tokens", 1, "model tokens", "difference (tokens per trajectory)"),
        ("total_tokens", 1, "total tokens (model + executor)", "difference (tokens per trajectory)"),
    )
    y = list(range(len(df)))[::-1]
    with _style():
        fig = _figure(11.0, 1.2 + 0.55 * len(df))
        axes = fig.subplots(1, len(panels), sharey=True)
        for ax, (col, scale, title, xlabel) in zip(axes, panels, strict=True):
            for yi, r in zip(y, df.itertuples(), strict=True):
                d = scale * getattr(r, f"{col}_diff")
                lo = scale * getattr(r, f"{col}_diff_ci_low")
                hi = scale * getattr(r, f"{col}_diff_ci_high")
                color = _color(r.a)
                clear = lo > 0 or hi < 0
                ax.errorbar(
                    d,
                    yi,
                    xerr=[[d - lo], [hi - d]],
                    fmt="o",
                    color=color,
                    mfc=color if clear else "white",
                    ecolor=color,
                    elinewidth=1.5,
                    capsize=3,
                )
                ax.annotate(
                    f"{d:+.1f}", (d, yi), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8
                )
            ax.axvline(0, color="#333333", lw=0.8)
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylim(-0.7, len(df) - 0.3)
        axes[0].set_yticks(y)
        axes[0].set_yticklabels(labels)
        n = int(df.n_problems.min())
        _title(
            fig,
            f"Paired differences on the same {n} problems, 95% bootstrap intervals",
            "each row: first configuration minus second, per problem; filled: the interval excludes 0",
        )
        return _save(fig, out_dir, FIGURE_FILES["comparisons"])


def make_all_figures(
    profile: str = DEFAULT_PROFILE,
    results_root: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> list[Path]:
    """Draw every figure the results allow; returns the saved paths (in the order of ``FIGURE_FILES``).

    Reads ``<results_root>/<profile>/eval_summary.csv`` (required), ``samples/*.jsonl``, ``maj_curve.csv`` (else the
    curve is computed from the samples with ``metrics.maj_curve``), ``comparisons.csv`` (else computed from the samples
    with ``metrics.compare_configs``), ``train_metrics.csv`` and
    ``<results_root>/bench/sandbox.json`` (``deepmath bench sandbox``). Raises FileNotFoundError when there is no
    eval summary. A figure that fails is reported and skipped.
    """

    prof = get_profile(profile)
    res = profile_results_dir(profile, results_root)
    out = Path(figures_dir) if figures_dir is not None else default_figures_dir()
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
            curve = metrics.maj_curve(records)
        except Exception as exc:  # a figure is not worth failing the run for; say why
            print(f"figures: maj@k curve skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    train = pd.read_csv(res / "train_metrics.csv") if (res / "train_metrics.csv").is_file() else None
    comparisons = None
    if (res / "comparisons.csv").is_file():
        comparisons = pd.read_csv(res / "comparisons.csv")
    elif records:  # results from before `deepmath eval` wrote comparisons.csv
        comparisons = metrics.compare_configs(records)
    try:
        bench = load_bench("sandbox", res.parent / "bench")
    except FileNotFoundError:
        bench = None
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
        ("example trace", lambda: plot_example_trace(records, out, prof) if records else None),
        (
            "original vs ours",
            lambda: plot_reference_comparison(summary, reference, out) if reference is not None else None,
        ),
        ("training curves", lambda: plot_training_curves(train, out) if train is not None else None),
        ("sandbox latency", lambda: plot_sandbox_latency(bench, out) if bench is not None else None),
        ("comparisons", lambda: plot_comparisons(comparisons, out) if comparisons is not None else None),
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
