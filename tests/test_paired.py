"""Paired comparisons where they are used: GRPO's before/after check (train_summary.json, heldout_check.csv), the
evaluation's comparisons.csv, and the README's conclusions drawn from them."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from deepmath_lib.evaluate import COMPARISONS_FILE, load_comparisons, summarize
from deepmath_lib.grpo import (
    CHECK_FILE,
    add_paired_fields,
    outcomes_from_samples,
    paired_check_fields,
    read_check_outcomes,
    write_check_outcomes,
)
from deepmath_lib.metrics import compare_configs
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.report import comparisons_block, conclusion_block
from deepmath_lib.results import read_records

RESULTS = REPO_ROOT / "data" / "results"
PAIRED_KEYS = [f"{m}_diff{s}" for m in ("accuracy", "code_use", "model_tokens") for s in ("", "_ci", "_p")]


def _outcome(pid: str, correct: int, code: int, tokens: int) -> dict:
    return {
        "problem_id": pid,
        "gold": "1",
        "pred": "1" if correct else "2",
        "correct": correct,
        "code_use": code,
        "model_tokens": tokens,
        "total_tokens": tokens + 5,
    }


def test_paired_check_fields_on_a_hand_made_check():
    # 12 problems: 10 go from wrong to right, none back; code use on all after, on 2 before; 10 tokens shorter each
    before = [_outcome(f"p{i}", int(i < 2), int(i < 2), 50) for i in range(12)]
    after = [_outcome(f"p{i}", 1, 1, 40) for i in reversed(range(12))]  # order does not matter: paired by id
    f = paired_check_fields(before, after)
    assert f["accuracy_diff"] == round(10 / 12, 4)
    assert f["accuracy_diff_p"] == float(f"{2 / 2**10:.3g}")
    assert f["accuracy_changed"] == {"gained": 10, "lost": 0}
    assert f["code_use_changed"] == {"gained": 10, "lost": 0}
    assert f["model_tokens_diff"] == -10.0 and f["model_tokens_diff_ci"] == [-10.0, -10.0]
    assert f["model_tokens_diff_p"] == float(f"{2 / 2**12:.3g}")  # 12 differences of -10: exact sign-flip
    lo, hi = f["accuracy_diff_ci"]
    assert 0 < lo <= f["accuracy_diff"] <= hi <= 1
    with pytest.raises(ValueError, match="same problems"):
        paired_check_fields(before, after[:-1])


def test_check_outcomes_round_trip_and_summary_update_keeps_other_fields(tmp_path):
    before = [_outcome(f"p{i}", i % 2, 1, 30 + i) for i in range(6)]
    after = [_outcome(f"p{i}", 1, 1, 20 + i) for i in range(6)]
    b, a = read_check_outcomes(write_check_outcomes(before, after, tmp_path / CHECK_FILE))
    assert [r["correct"] for r in b] == [o["correct"] for o in before] and len(a) == 6
    res = tmp_path / "nano"
    res.mkdir()
    (res / "train_summary.json").write_text(json.dumps({"steps": 3, "accuracy_before": 0.5}))
    summary = add_paired_fields("nano", before, after, "a test", tmp_path)
    stored = json.loads((res / "train_summary.json").read_text())
    assert stored == summary and stored["steps"] == 3 and stored["accuracy_before"] == 0.5
    assert stored["paired_source"] == "a test" and all(k in stored for k in PAIRED_KEYS)
    assert (res / CHECK_FILE).is_file()
    with pytest.raises(FileNotFoundError, match="deepmath train"):
        add_paired_fields("smol", before, after, "x", tmp_path)


def test_smol_summary_has_the_paired_figures_of_its_committed_samples():
    t = json.loads((RESULTS / "smol" / "train_summary.json").read_text())
    assert t["accuracy_diff"] == pytest.approx(0.110)
    assert t["accuracy_diff_ci"] == pytest.approx([0.070, 0.160])
    # exact McNemar on 23 gained / 1 lost: two-sided binomial tail, 2 * (C(24, 0) + C(24, 1)) / 2**24
    assert t["accuracy_diff_p"] == pytest.approx(2 * (1 + 24) / 2**24, rel=0.01)
    assert t["accuracy_changed"] == {"gained": 23, "lost": 1}
    # regenerable: the same fields from the committed samples, and from the stored per-problem outcomes
    before = outcomes_from_samples("smol", "heldout200", "agent")
    after = outcomes_from_samples("smol", "heldout200", "deepmath")
    fresh = paired_check_fields(before, after)
    assert {k: t[k] for k in fresh} == fresh
    assert paired_check_fields(*read_check_outcomes(RESULTS / "smol" / CHECK_FILE)) == fresh


def test_nano_summary_paired_fields_match_its_stored_outcomes():
    t = json.loads((RESULTS / "nano" / "train_summary.json").read_text())
    before, after = read_check_outcomes(RESULTS / "nano" / CHECK_FILE)
    assert len(before) == len(after) == t["heldout_problems"]
    # the stored outcomes are the check's: they give the summary's own marginal figures
    assert sum(o["correct"] for o in before) / len(before) == t["accuracy_before"]
    assert sum(o["correct"] for o in after) / len(after) == t["accuracy_after"]
    assert sum(o["code_use"] for o in after) / len(after) == t["code_use_rate_after"]
    assert round(sum(o["model_tokens"] for o in after) / len(after), 1) == t["mean_model_tokens_after"]
    fresh = paired_check_fields(before, after)
    assert {k: t[k] for k in fresh} == fresh


@pytest.mark.parametrize("profile", ["nano", "smol"])
def test_committed_comparisons_are_those_of_the_committed_samples(profile):
    stored = load_comparisons(profile)
    fresh = compare_configs(read_records(RESULTS / profile / "samples"))
    assert [(r.a, r.b) for r in stored.itertuples()] == [
        ("deepmath", "agent"),
        ("deepmath", "baseline"),
        ("agent", "baseline"),
        ("grpo", "baseline"),
    ]
    pd.testing.assert_frame_equal(stored, fresh, check_dtype=False)


def test_summarize_writes_comparisons_beside_the_summary(tmp_path):
    shutil.copytree(RESULTS / "smol" / "samples", tmp_path / "smol" / "samples")
    summarize("smol", tmp_path)
    out = pd.read_csv(tmp_path / "smol" / COMPARISONS_FILE)
    r = out[(out.a == "deepmath") & (out.b == "agent")].iloc[0]
    assert (r.maj_a_only, r.maj_b_only, r.n_problems) == (23, 1, 200)
    assert r.maj_diff == pytest.approx(0.11) and r.maj_p == pytest.approx(2 * (1 + 24) / 2**24)
    with pytest.raises(FileNotFoundError, match="deepmath eval"):
        load_comparisons("nano", tmp_path)


def test_conclusions_follow_the_paired_figures(tmp_path):
    res = tmp_path / "smol"
    res.mkdir()
    shutil.copy(RESULTS / "smol" / COMPARISONS_FILE, res / COMPARISONS_FILE)
    t = json.loads((RESULTS / "smol" / "train_summary.json").read_text())
    (res / "train_summary.json").write_text(json.dumps(t))
    text = conclusion_block("smol", tmp_path)
    assert "GRPO raised smol's accuracy: +11.0 points [+7.0, +16.0]" in text
    assert "McNemar p = 3.0e-6" in text
    assert "- +GRPO vs Baseline (GRPO, without the tool): no measurable accuracy difference" in text
    # an interval that reaches 0 is not a gain, whatever the point estimate
    t.update(accuracy_diff=0.03, accuracy_diff_ci=[-0.01, 0.07], accuracy_diff_p=0.2)
    (res / "train_summary.json").write_text(json.dumps(t))
    assert "did not measurably change smol's accuracy: +3.0 points [-1.0, +7.0]" in conclusion_block(
        "smol", tmp_path
    )
    block = comparisons_block("smol", tmp_path)
    # Holm over the 4 comparisons: this p is the third smallest, so it is doubled
    assert "| DeepMath vs +Agent | +11.0 points [+7.0, +16.0] | 23 / 1 | 6.0e-6 |" in block
