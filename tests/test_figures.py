"""Figures from a small synthetic results set: every file is produced, non-empty, and deterministic."""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from deepmath_lib import figures as figs
from deepmath_lib.datasets import load_reference
from deepmath_lib.results import ResultStore, samples_path, write_eval_summary

CONFIGS = ("baseline", "agent", "grpo", "deepmath")
DATASETS = ("nano", "math500")
TRACE = (
    "We need 123*457. Let me compute it.\n"
    "<tool_call>\nx = 123 * 457\nx\n</tool_call>\n"
    "```output\n56211\n```\n"
    "So the product is 56211, and the cost is $5.\n"
    "The answer is \\boxed{56211}."
)


def synthetic_records(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for d in DATASETS:
        for c in CONFIGS:
            tool = c in ("agent", "deepmath")
            for p in range(6):
                for s in range(4):
                    calls = rng.randint(1, 3) if tool else 0
                    correct = rng.random() < (0.7 if c == "deepmath" else 0.5)
                    text = TRACE if tool else "Long reasoning...\n" * rng.randint(2, 30) + "\\boxed{7}"
                    out.append(
                        {
                            "dataset": d, "config": c, "problem_id": f"{d}-{p}", "sample": s, "problem": "123*457?",
                            "gold": "56211", "pred": "56211" if correct else "7", "correct": correct,
                            "finish_reason": "answer", "n_calls": calls, "n_calls_ok": calls,
                            "model_tokens": rng.randint(50, 120) if tool else rng.randint(150, 300),
                            "total_tokens": 0, "text": text,
                        }
                    )  # fmt: skip
    return out


def synthetic_summary() -> pd.DataFrame:
    rows = []
    for i, d in enumerate(DATASETS):
        for j, c in enumerate(CONFIGS):
            for k in (1, 4):
                acc = 0.4 + 0.1 * j - 0.05 * i + 0.02 * k
                length = 250 - 60 * (c in ("agent", "deepmath")) - 10 * (c == "grpo") + 5 * i
                rows.append(
                    {
                        "dataset": d, "config": c, "k": k, "maj_at_k": acc, "maj_ci_low": acc - 0.1,
                        "maj_ci_high": min(acc + 0.1, 1.0), "pass_at_k": min(acc + 0.2, 1.0), "mean_at_k": acc - 0.05,
                        "mean_len_model_tokens": length, "mean_len_total_tokens": length + 20 * (c in ("agent", "deepmath")),
                        "n_problems": 6, "mean_calls": 1.5 * (c in ("agent", "deepmath")),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def synthetic_curve() -> pd.DataFrame:
    rows = []
    for d in DATASETS:
        for j, c in enumerate(CONFIGS):
            for k in range(1, 5):
                m = 0.3 + 0.1 * j + 0.03 * k
                rows.append(
                    {"dataset": d, "config": c, "k": k, "maj_at_k": m, "ci_low": m - 0.1, "ci_high": m + 0.1}
                )
    return pd.DataFrame(rows)


def synthetic_train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": range(20),
            "reward": [0.1 * i for i in range(20)],
            "reward_accuracy": [0.01 * i for i in range(20)],
            "reward_code": [0.05 * i for i in range(20)],
            "code_use_rate": [min(1.0, 0.05 * i) for i in range(20)],
            "accuracy": [0.3 + 0.01 * i for i in range(20)],
            "mean_model_tokens": [100 - i for i in range(20)],
            "temperature": [1.2 - 0.025 * i for i in range(20)],
        }
    )


@pytest.fixture()
def results_root(tmp_path) -> Path:
    root = tmp_path / "results"
    write_eval_summary(synthetic_summary(), "nano", root)
    for r in synthetic_records():
        ResultStore(samples_path("nano", r["dataset"], r["config"], root)).append(r)
    synthetic_curve().to_csv(root / "nano" / "maj_curve.csv", index=False)
    synthetic_train().to_csv(root / "nano" / "train_metrics.csv", index=False)
    return root


def test_make_all_figures_draws_every_figure(results_root, tmp_path):
    out = tmp_path / "figs"
    saved = figs.make_all_figures("nano", results_root, out)
    assert [p.name for p in saved] == list(figs.FIGURE_FILES.values())
    for p in saved:
        assert p.parent == out and p.stat().st_size > 5000, p
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_deterministic(results_root, tmp_path):
    a = figs.make_all_figures("nano", results_root, tmp_path / "a")
    b = figs.make_all_figures("nano", results_root, tmp_path / "b")
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_curve_computed_from_records_via_metrics(results_root, tmp_path, monkeypatch):
    (results_root / "nano" / "maj_curve.csv").unlink()
    (results_root / "nano" / "train_metrics.csv").unlink()
    seen = {}

    def maj_curve(records, ks=None):
        seen["n"] = len(records)
        return synthetic_curve()

    monkeypatch.setitem(sys.modules, "deepmath_lib.metrics", types.SimpleNamespace(maj_curve=maj_curve))
    saved = figs.make_all_figures("nano", results_root, tmp_path / "f")
    assert seen["n"] == len(synthetic_records())
    names = {p.name for p in saved}
    assert "maj_at_k.png" in names and "training_curves.png" not in names


def test_figures_main(results_root, tmp_path, capsys):
    assert figs.figures_main("nano", str(results_root), str(tmp_path / "f")) == 0
    out = capsys.readouterr().out
    assert "9 file(s) saved" in out and "accuracy.png" in out
    assert figs.figures_main("nano", str(tmp_path / "empty"), str(tmp_path / "g")) == 1
    assert "no eval summary" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_summary_only_still_draws_summary_figures(tmp_path):
    root = tmp_path / "r"
    write_eval_summary(synthetic_summary()[lambda d: d.config != "baseline"], "nano", root)
    saved = {p.name for p in figs.make_all_figures("nano", root, tmp_path / "f")}
    assert {"accuracy.png", "output_length.png", "accuracy_vs_length.png", "original_vs_ours.png"} <= saved
    assert "length_reduction.png" not in saved  # no baseline to compare with
    assert "tool_calls.png" not in saved and "example_trace.png" not in saved


def test_pick_example_prefers_correct_deepmath_with_calls():
    recs = synthetic_records()
    best = figs.pick_example(recs)
    assert best["config"] == "deepmath" and best["correct"] and best["n_calls"] >= 1
    no_dm = [r for r in recs if r["config"] != "deepmath"]
    assert figs.pick_example(no_dm)["config"] == "agent"
    assert figs.pick_example([r for r in recs if r["n_calls"] == 0]) is None


def test_split_trace_segments():
    kinds = [k for k, _ in figs.split_trace(TRACE)]
    assert kinds == ["text", "code", "text", "output", "text"]
    assert figs.split_trace("```python\nprint(1)\n```\n```output\n1\n```")[0][0] == "code"


def test_length_reduction_and_comparison_table():
    red = figs.length_reduction(synthetic_summary())
    row = red[(red.dataset == "nano") & (red.config == "agent")].iloc[0]
    assert row.reduction_pct == pytest.approx(100 * 60 / 250)
    table = figs.comparison_table(synthetic_summary(), load_reference())
    assert len(table) == 8 + 16 - 4  # math500 is on both sides
    assert list(table.dataset[:4]) == ["math500"] * 4 and list(table.config[:4]) == list(CONFIGS)
    both = table[table.dataset == "math500"]
    assert both.ours_maj.notna().all() and both.original_maj_at_16.notna().all()
    aime = table[(table.dataset == "aime2025") & (table.config == "deepmath")].iloc[0]
    assert aime.original_maj_at_16 == pytest.approx(0.6667) and pd.isna(aime.ours_maj)


def test_side_by_side_table():
    table = figs.side_by_side(synthetic_summary(), load_reference())
    assert list(table.index) == ["Baseline", "+Agent", "+GRPO", "DeepMath"]
    assert table.loc["DeepMath", ("original: HMMT Feb 2025", "maj@16 %")] == pytest.approx(48.89)
    assert table.loc["+Agent", ("ours: nano (synthetic)", "maj@4 %")] == pytest.approx(58.0)
    assert table.loc["+Agent", ("ours: nano (synthetic)", "95% CI")] == "48-68"
    only_ref = figs.side_by_side(pd.DataFrame(), load_reference())
    assert only_ref.shape == (4, 8)


def test_headline_takes_largest_k_in_fixed_order():
    head = figs.headline(synthetic_summary().sample(frac=1.0, random_state=0))
    assert list(head.k.unique()) == [4]
    assert list(zip(head.dataset, head.config, strict=True))[:4] == [("math500", c) for c in CONFIGS]
