"""Figures from a small synthetic results set: every file is produced, non-empty, deterministic and readable
(titles, labels and legends inside the canvas, no legend on a title)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_tables import (
    TRACE,
    synthetic_bench,
    synthetic_curve,
    synthetic_records,
    synthetic_summary,
    synthetic_train,
)

from deepmath_lib import plots
from deepmath_lib.cli import figures_main
from deepmath_lib.datasets import load_reference
from deepmath_lib.profiles import get_profile
from deepmath_lib.results import ResultStore, samples_path, write_eval_summary

NANO = get_profile("nano")
SMOL = get_profile("smol")


@pytest.fixture()
def results_root(tmp_path) -> Path:
    root = tmp_path / "results"
    write_eval_summary(synthetic_summary(), "nano", root)
    for r in synthetic_records():
        ResultStore(samples_path("nano", r["dataset"], r["config"], root)).append(r)
    synthetic_curve().to_csv(root / "nano" / "maj_curve.csv", index=False)
    synthetic_train().to_csv(root / "nano" / "train_metrics.csv", index=False)
    (root / "bench").mkdir()
    (root / "bench" / "sandbox.json").write_text(json.dumps(synthetic_bench()))
    return root


@pytest.fixture()
def drawn(monkeypatch) -> dict:
    """The Figure objects the plots save, by file name."""
    figs: dict = {}
    save = plots._save

    def keep(fig, out_dir, name):
        figs[name] = fig
        return save(fig, out_dir, name)

    monkeypatch.setattr(plots, "_save", keep)
    return figs


def unreadable(fig) -> list[str]:
    """Titles, axis labels, annotations and legends that leave the canvas, and legends that cover a title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    titles = [fig._suptitle] if fig._suptitle is not None else []
    texts = list(titles)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        heads = [ax.title, ax._left_title, ax._right_title]
        titles += [t for t in heads if t.get_text()]
        texts += heads + [ax.xaxis.label, ax.yaxis.label] + list(ax.texts)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for leg in legends:
        texts += list(leg.get_texts()) + [leg.get_title()]
    problems = []
    for t in texts:
        if not t.get_visible() or not t.get_text().strip():
            continue
        bb = t.get_window_extent(renderer)
        if bb.x0 < canvas.x0 - 1 or bb.y0 < canvas.y0 - 1 or bb.x1 > canvas.x1 + 1 or bb.y1 > canvas.y1 + 1:
            problems.append(f"outside the canvas: {t.get_text()[:60]!r}")
    for leg in legends:
        lb = leg.get_window_extent(renderer)
        problems += [
            f"legend on title {t.get_text()[:60]!r}"
            for t in titles
            if lb.overlaps(t.get_window_extent(renderer))
        ]
    return problems


def test_make_all_figures_draws_every_figure(results_root, tmp_path):
    out = tmp_path / "figs"
    saved = plots.make_all_figures("nano", results_root, out)
    assert [p.name for p in saved] == list(plots.FIGURE_FILES.values())
    for p in saved:
        assert p.parent == out and p.stat().st_size > 5000, p
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_reads_inside_its_canvas(results_root, tmp_path, drawn):
    plots.make_all_figures("nano", results_root, tmp_path / "f")
    assert set(drawn) == set(plots.FIGURE_FILES.values())
    assert {name: unreadable(fig) for name, fig in drawn.items() if unreadable(fig)} == {}
    plots.plot_reference_comparison(pd.DataFrame(), load_reference(), tmp_path / "g")  # ours missing
    assert unreadable(drawn["original_vs_ours.png"]) == []


def test_figures_are_deterministic(results_root, tmp_path):
    a = plots.make_all_figures("nano", results_root, tmp_path / "a")
    b = plots.make_all_figures("nano", results_root, tmp_path / "b")
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_curve_computed_from_records_via_metrics(results_root, tmp_path, monkeypatch):
    (results_root / "nano" / "maj_curve.csv").unlink()
    (results_root / "nano" / "train_metrics.csv").unlink()
    seen = {}

    def maj_curve(records, ks=None):
        seen["n"] = len(records)
        return synthetic_curve()

    monkeypatch.setattr(plots.metrics, "maj_curve", maj_curve)
    saved = plots.make_all_figures("nano", results_root, tmp_path / "f")
    assert seen["n"] == len(synthetic_records())
    names = {p.name for p in saved}
    assert "maj_at_k.png" in names and "training_curves.png" not in names


def test_figures_main(results_root, tmp_path, capsys):
    assert figures_main("nano", str(results_root), str(tmp_path / "f")) == 0
    out = capsys.readouterr().out
    assert f"{len(plots.FIGURE_FILES)} file(s) saved" in out and "accuracy.png" in out
    assert figures_main("nano", str(tmp_path / "empty"), str(tmp_path / "g")) == 1
    assert "no eval summary" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_summary_only_still_draws_summary_figures(tmp_path):
    root = tmp_path / "r"
    write_eval_summary(synthetic_summary()[lambda d: d.config != "baseline"], "nano", root)
    saved = {p.name for p in plots.make_all_figures("nano", root, tmp_path / "f")}
    assert {"accuracy.png", "output_length.png", "accuracy_vs_length.png", "original_vs_ours.png"} <= saved
    assert "length_reduction.png" not in saved  # no baseline to compare with
    assert "tool_calls.png" not in saved and "example_trace.png" not in saved
    assert "sandbox_latency.png" not in saved  # no bench/sandbox.json


def test_make_all_figures_draws_the_sandbox_bench_when_stored(results_root, tmp_path):
    saved = {p.name for p in plots.make_all_figures("nano", results_root, tmp_path / "a")}
    assert "sandbox_latency.png" in saved
    (results_root / "bench" / "sandbox.json").unlink()
    saved = {p.name for p in plots.make_all_figures("nano", results_root, tmp_path / "b")}
    assert "sandbox_latency.png" not in saved and "accuracy.png" in saved


def test_plot_sandbox_latency_from_a_dict(tmp_path, drawn):
    path = plots.plot_sandbox_latency(synthetic_bench(), tmp_path)
    assert path == tmp_path / "sandbox_latency.png" and path.stat().st_size > 5000
    ax = drawn["sandbox_latency.png"].axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["trivial (x = 1 + 1)", "sympy.solve", "1e5-iteration loop"]
    legend = [t.get_text() for t in drawn["sandbox_latency.png"].legends[0].get_texts()]
    assert "bare exec (no isolation)" in legend and not any("_" in t for t in legend + ticks)
    assert plots.plot_sandbox_latency({}, tmp_path / "none") is None
    assert plots.plot_sandbox_latency({"latency_ms": {}}, tmp_path / "none") is None
    nan = {"latency_ms": {"smolagents": {"trivial": float("nan")}}}
    assert plots.plot_sandbox_latency(nan, tmp_path / "none") is None
    assert not (tmp_path / "none").exists()


def test_training_curves_plot_each_logged_metric_once(tmp_path, drawn):
    plots.plot_training_curves(synthetic_train(), tmp_path)
    fig = drawn["training_curves.png"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [plots.TRAIN_LABELS[c] for c in ("reward", "reward_accuracy", "reward_code")] + [
        plots.TRAIN_LABELS[c] for c in ("mean_model_tokens", "temperature")
    ]


def test_example_trace_reads_both_call_formats(tmp_path, drawn):
    nano = plots._trace_lines(TRACE, NANO, 96, max_text_run=8, max_lines=60)
    assert [line for kind, line in nano if kind == "code"] == [
        "<tool_call>",
        "x = 123 * 457",
        "x",
        "</tool_call>",
    ]
    assert [line for kind, line in nano if kind == "output"] == ["```output", "56211", "```"]
    smol_text = "Let me compute.\n```python\nprint(123 * 457)\n```\n```output\n56211\n```\nSo \\boxed{56211}."
    smol = plots._trace_lines(smol_text, SMOL, 96, max_text_run=8, max_lines=60)
    assert [kind for kind, _ in smol] == ["text"] + ["code"] * 3 + ["output"] * 3 + ["text"]
    record = {
        "dataset": "nano",
        "config": "agent",
        "text": smol_text,
        "n_calls": 1,
        "correct": True,
        "pred": "56211",
    }
    assert plots.plot_example_trace([], tmp_path, SMOL, record=record).is_file()
    title = drawn["example_trace.png"].axes[0].get_title(loc="left")
    assert "+Agent" in title and "1 call " in title


def test_profiles_side_by_side_draws_what_exists(tmp_path):
    import shutil

    from deepmath_lib.paths import REPO_ROOT

    assert plots.plot_profiles(tmp_path / "none", tmp_path / "out") is None  # no results: no figure
    shutil.copytree(REPO_ROOT / "data/results/nano", tmp_path / "res/nano")
    path = plots.plot_profiles(tmp_path / "res", tmp_path / "out")
    assert path == tmp_path / "out" / "profiles_side_by_side.png" and path.stat().st_size > 10_000


def test_training_curves_show_the_step_time_split_when_logged(tmp_path):
    from deepmath_lib.paths import REPO_ROOT
    from deepmath_lib.results import STEP_TIME_COLUMNS

    df = pd.read_csv(REPO_ROOT / "data/results/nano/train_metrics.csv")
    df = df.drop(columns=[c for c in STEP_TIME_COLUMNS if c in df.columns])  # a run that logged no timing
    plain = plots.plot_training_curves(df, tmp_path / "a")
    timed = plots.plot_training_curves(
        df.assign(step_s=3.0, rollout_s=2.0, reward_s=0.01, optimizer_s=0.99), tmp_path / "b"
    )
    assert (
        plain.stat().st_size > 10_000 and timed.stat().st_size > plain.stat().st_size
    )  # one more panel drawn
