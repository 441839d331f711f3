"""The tables behind the figures, on a small synthetic results set (the set is shared with test_plots.py)."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from deepmath_lib import tables
from deepmath_lib.datasets import load_reference

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
            "code_use_rate": [0.05 * i for i in range(20)],  # a copy of reward_code: never drawn
            "accuracy": [0.3 + 0.01 * i for i in range(20)],
            "mean_model_tokens": [100 - i for i in range(20)],
            "temperature": [1.2 - 0.025 * i for i in range(20)],
        }
    )


def synthetic_bench() -> dict:
    """The shape of `deepmath_lib.bench.sandbox.measure()`'s result, plus a key the figure ignores."""
    return {
        "latency_ms": {
            "bare_exec": {"trivial": 0.0005, "sympy_solve": 8.0, "loop_1e5": 12.0},
            "sandbox": {"trivial": 0.4, "sympy_solve": 9.0, "loop_1e5": 15.0},
            "smolagents": {"trivial": 0.04, "sympy_solve": 40.0, "loop_1e5": 700.0},
            "process_per_snippet": {"trivial": 55.0, "sympy_solve": 850.0, "loop_1e5": 40.0},
        },
        "creation_ms": 3.2,
        "overhead_ms": 0.4,
        "repeats": 30,
        "host": {"cpus": 2},
    }


def test_pick_example_prefers_correct_deepmath_with_calls():
    recs = synthetic_records()
    best = tables.pick_example(recs)
    assert best["config"] == "deepmath" and best["correct"] and best["n_calls"] >= 1
    no_dm = [r for r in recs if r["config"] != "deepmath"]
    assert tables.pick_example(no_dm)["config"] == "agent"
    assert tables.pick_example([r for r in recs if r["n_calls"] == 0]) is None


def test_length_reduction_and_comparison_table():
    red = tables.length_reduction(synthetic_summary())
    row = red[(red.dataset == "nano") & (red.config == "agent")].iloc[0]
    assert row.reduction_pct == pytest.approx(100 * 60 / 250)
    table = tables.comparison_table(synthetic_summary(), load_reference())
    assert len(table) == 8 + 16 - 4  # math500 is on both sides
    assert list(table.dataset[:4]) == ["math500"] * 4 and list(table.config[:4]) == list(CONFIGS)
    both = table[table.dataset == "math500"]
    assert both.ours_maj.notna().all() and both.original_maj_at_16.notna().all()
    aime = table[(table.dataset == "aime2025") & (table.config == "deepmath")].iloc[0]
    assert aime.original_maj_at_16 == pytest.approx(0.6667) and pd.isna(aime.ours_maj)


def test_side_by_side_table():
    table = tables.side_by_side(synthetic_summary(), load_reference())
    assert list(table.index) == ["Baseline", "+Agent", "+GRPO", "DeepMath"]
    assert table.loc["DeepMath", ("original: HMMT Feb 2025", "maj@16 %")] == pytest.approx(48.89)
    assert table.loc["+Agent", ("ours: nano (synthetic)", "maj@4 %")] == pytest.approx(58.0)
    assert table.loc["+Agent", ("ours: nano (synthetic)", "95% CI")] == "48-68"
    only_ref = tables.side_by_side(pd.DataFrame(), load_reference())
    assert only_ref.shape == (4, 8)


def test_headline_takes_largest_k_in_fixed_order():
    head = tables.headline(synthetic_summary().sample(frac=1.0, random_state=0))
    assert list(head.k.unique()) == [4]
    assert list(zip(head.dataset, head.config, strict=True))[:4] == [("math500", c) for c in CONFIGS]


def test_summary_table_formats_the_interval_and_keeps_optional_columns():
    table = tables.summary_table(tables.headline(synthetic_summary()))
    assert table.loc[0, "maj@k"] == "43.0% [33.0%, 53.0%]"  # math500 baseline at k=4
    assert "mean_calls" in table and "truncation_rate" not in table and "maj_at_k" not in table
