"""Evaluation metrics against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from deepmath_lib.metrics import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    maj_at_k,
    maj_curve,
    pass_at_k,
    summarize_samples,
    tool_call_hist,
)

# ----------------------------------------------------------------------------------------------- pass@k


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_known_values():
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    # large n stays finite and in range (the binomial form would overflow floats)
    v = pass_at_k(2000, 3, 16)
    assert 0.0 < v < 1.0 and v == pytest.approx(1 - math.comb(1997, 16) / math.comb(2000, 16))


@pytest.mark.parametrize("n, c, k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ----------------------------------------------------------------------------------------------- maj@k


def test_maj_at_k_ties_go_to_the_earliest_class():
    assert maj_at_k(["4", "5"], "5") is False  # 1-1 tie: "4" came first
    assert maj_at_k(["4", "5"], "4") is True
    assert maj_at_k(["5", "4", "\\boxed{4}"], "4") is True  # 2 vs 1
    assert maj_at_k(["5", "4", "4"], "5", k=1) is True  # only the first sample
    assert maj_at_k(["5", "4", "4"], "5", k=2) is True  # tie -> "5"
    assert maj_at_k(["5", "4", "4"], "5") is False


def test_maj_at_k_uses_equivalence_and_ignores_none():
    assert maj_at_k(["0.5", "3", "\\frac{1}{2}", "3", "1/2"], "\\frac12") is True
    assert maj_at_k([None, None, "7"], "7") is True
    assert maj_at_k([None, None], "7") is False
    assert maj_at_k([], "7") is False


# ----------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_constant_input_zero_width():
    assert bootstrap_ci([0.7] * 25) == (pytest.approx(0.7), pytest.approx(0.7))
    lo, hi = bootstrap_ci([1.0] * 3, n_boot=100)
    assert lo == hi == 1.0


def test_bootstrap_small_and_empty():
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([0.25]) == (0.25, 0.25)


def test_bootstrap_interval_contains_mean_and_is_seeded():
    values = [0.0, 1.0] * 50
    lo, hi = bootstrap_ci(values, seed=3)
    assert 0.3 < lo < 0.5 < hi < 0.7
    assert bootstrap_ci(values, seed=3) == (lo, hi)
    lo90, hi90 = bootstrap_ci(values, alpha=0.1, seed=3)
    assert lo <= lo90 and hi90 <= hi


# ----------------------------------------------------------------------------------------------- tables


def _rec(dataset, config, pid, sample, gold, pred, correct, finish, n_calls, ok, model, total):
    return {
        "dataset": dataset,
        "config": config,
        "problem_id": pid,
        "sample": sample,
        "gold": gold,
        "pred": pred,
        "correct": correct,
        "finish_reason": finish,
        "n_calls": n_calls,
        "n_calls_ok": ok,
        "model_tokens": model,
        "total_tokens": total,
    }


def _records() -> list[dict]:
    a = ("d", "agent")
    b = ("d", "base")
    rows = [
        # agent/p1: gold 2, preds 3,2,2 -> maj@3 "2" right; k=1 and k=2 (tie) pick "3" -> wrong
        _rec(*a, "p1", 0, "2", "3", False, "answer", 1, 1, 10, 15),
        _rec(*a, "p1", 1, "2", "2", True, "answer", 0, 0, 20, 20),
        _rec(*a, "p1", 2, "2", "2", True, "budget", 2, 1, 30, 40),
        # agent/p2: gold 5, preds 4,5,None -> 1-1 tie -> "4" wrong at every k
        _rec(*a, "p2", 0, "5", "4", False, "answer", 0, 0, 40, 40),
        _rec(*a, "p2", 1, "5", "5", True, "answer", 0, 0, 50, 50),
        _rec(*a, "p2", 2, "5", None, False, "budget", 3, 0, 60, 90),
        # agent/p3: gold 1/2, preds 0.5, \frac12, 3 -> right at every k
        _rec(*a, "p3", 0, "1/2", "0.5", True, "answer", 1, 1, 5, 10),
        _rec(*a, "p3", 1, "1/2", "\\frac{1}{2}", True, "answer", 1, 1, 5, 10),
        _rec(*a, "p3", 2, "1/2", "3", False, "answer", 1, 1, 5, 10),
        # base/q1: ungradeable gold -> all three rows skipped
        _rec(*b, "q1", 0, "??", "1", None, "answer", 0, 0, 10, 10),
        _rec(*b, "q1", 1, "??", "1", None, "answer", 0, 0, 10, 10),
        _rec(*b, "q1", 2, "??", "1", None, "answer", 0, 0, 10, 10),
        # base/q2: two samples, both right; base/q3: one sample, wrong
        _rec(*b, "q2", 0, "7", "7", True, "eos", 0, 0, 10, 10),
        _rec(*b, "q2", 1, "7", "7", True, "eos", 0, 0, 10, 10),
        _rec(*b, "q3", 0, "1", "2", False, "answer", 0, 0, 10, 10),
    ]
    rows.reverse()  # order must not matter: samples are taken by `sample` index
    return rows


def test_summarize_samples_hand_computed():
    s = summarize_samples(_records())
    assert list(s.columns[: len(SUMMARY_COLUMNS)]) == [
        "dataset",
        "config",
        "k",
        "maj_at_k",
        "maj_ci_low",
        "maj_ci_high",
        "pass_at_k",
        "mean_at_k",
        "mean_len_model_tokens",
        "mean_len_total_tokens",
        "n_problems",
    ]
    for col in ["mean_at_k_ci_low", "mean_at_k_ci_high", "mean_calls", "code_use_rate", "truncation_rate"]:
        assert col in s.columns
    assert {"answer_rate", "n_skipped"} <= set(s.columns)
    assert list(zip(s.dataset, s.config, strict=True)) == [("d", "agent"), ("d", "base")]

    agent = s.iloc[0]
    assert agent.k == 3
    assert agent.maj_at_k == pytest.approx(2 / 3)  # p1 right, p2 tie -> wrong, p3 right
    assert agent.pass_at_k == pytest.approx(1.0)  # every problem has a right sample among 3
    assert agent.mean_at_k == pytest.approx((2 / 3 + 1 / 3 + 2 / 3) / 3)  # 5/9
    assert agent.mean_len_model_tokens == pytest.approx(225 / 9)
    assert agent.mean_len_total_tokens == pytest.approx(285 / 9)
    assert agent.n_problems == 3
    assert agent.mean_calls == pytest.approx(9 / 9)
    assert agent.code_use_rate == pytest.approx(5 / 9)
    assert agent.truncation_rate == pytest.approx(2 / 9)
    assert agent.answer_rate == pytest.approx(8 / 9)
    assert agent.n_skipped == 0
    assert 0 <= agent.maj_ci_low <= agent.maj_at_k <= agent.maj_ci_high <= 1
    assert 0 <= agent.mean_at_k_ci_low <= agent.mean_at_k <= agent.mean_at_k_ci_high <= 1

    base = s.iloc[1]
    assert base.k == 1  # k defaults to 2 (q2); q3 only has 1 sample
    assert base.maj_at_k == pytest.approx(0.5)
    assert base.pass_at_k == pytest.approx(0.5)  # q2: n=2,c=2 -> 1; q3: n=1,c=0 -> 0
    assert base.mean_at_k == pytest.approx(0.5)
    assert base.n_problems == 2
    assert base.n_skipped == 3
    assert base.mean_len_model_tokens == pytest.approx(10.0)
    assert base.truncation_rate == 0.0 and base.code_use_rate == 0.0 and base.answer_rate == 1.0


def test_summarize_samples_k2_uses_first_two_samples():
    s = summarize_samples(pd.DataFrame(_records()), k=2)
    agent = s[s.config == "agent"].iloc[0]
    assert agent.k == 2
    assert agent.maj_at_k == pytest.approx(1 / 3)  # p1 tie -> "3" wrong, p2 tie -> "4" wrong, p3 right
    assert agent.mean_at_k == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    # pass@2 over all n=3 samples: p1 c=2 -> 1, p2 c=1 -> 1 - C(2,2)/C(3,2) = 2/3, p3 c=2 -> 1
    assert agent.pass_at_k == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert agent.mean_len_model_tokens == pytest.approx((10 + 20 + 40 + 50 + 5 + 5) / 6)
    assert agent.truncation_rate == 0.0
    assert agent.answer_rate == 1.0


def test_summarize_samples_all_skipped_group():
    recs = [_rec("d", "x", "q", i, "??", "1", None, "answer", 0, 0, 1, 1) for i in range(2)]
    s = summarize_samples(recs)
    assert len(s) == 1
    row = s.iloc[0]
    assert row.n_problems == 0 and row.n_skipped == 2 and row.k == 0 and math.isnan(row.maj_at_k)


def test_maj_curve_hand_computed():
    c = maj_curve(_records())
    assert list(c.columns) == ["dataset", "config", "k", "maj_at_k", "ci_low", "ci_high"]
    agent = c[c.config == "agent"].set_index("k")["maj_at_k"]
    assert list(agent.index) == [1, 2, 3]
    assert agent.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    base = c[c.config == "base"].set_index("k")["maj_at_k"]
    assert base.tolist() == pytest.approx([0.5, 0.5])
    assert (c.ci_low <= c.maj_at_k).all() and (c.maj_at_k <= c.ci_high).all()
    only3 = maj_curve(_records(), ks=[3])
    assert only3[only3.config == "agent"].maj_at_k.tolist() == pytest.approx([2 / 3])


def test_tool_call_hist():
    h = tool_call_hist(_records())
    assert list(h.columns) == ["dataset", "config", "n_calls", "count"]
    agent = dict(zip(h[h.config == "agent"].n_calls, h[h.config == "agent"]["count"], strict=True))
    assert agent == {0: 3, 1: 4, 2: 1, 3: 1}
    base = dict(zip(h[h.config == "base"].n_calls, h[h.config == "base"]["count"], strict=True))
    assert base == {0: 6}


# ----------------------------------------------------------------------------------------------- paired comparisons


def test_mcnemar_ten_discordant_pairs_all_one_way():
    from deepmath_lib.metrics import mcnemar_exact

    assert mcnemar_exact(10, 0) == 2 / 2**10
    assert mcnemar_exact(0, 10) == 2 / 2**10
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way
    assert mcnemar_exact(3, 3) == 1.0  # capped at 1
    # 21 gained, 1 lost (smol's before/after): 2 * (C(22,0) + C(22,1)) / 2^22
    assert mcnemar_exact(21, 1) == pytest.approx(2 * 23 / 2**22, rel=1e-12)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_sign_flip_exact_on_a_small_case():
    from deepmath_lib.metrics import sign_flip_p

    # 8 sign patterns of (1, 2, 3): |sum| >= 6 only for all + and all -
    assert sign_flip_p([1, 2, 3]) == 2 / 8
    # (1, 1, -1, 3), observed sum 4: sign patterns give ±3 + (±1 ±1 ±1); |sum| >= 4 when the three 1s add to
    # +1 or +3 with the 3's sign (4 of 8 patterns each way): 8 of 16
    pats = list(itertools.product((1, -1), repeat=4))
    d = (1, 1, -1, 3)
    expected = sum(abs(sum(s * x for s, x in zip(p, d, strict=True))) >= 4 for p in pats) / 16
    assert sign_flip_p(d) == expected == 0.5
    assert sign_flip_p([0, 0, 2, 0]) == 1.0  # zeros drop out: one difference, either sign as extreme
    assert sign_flip_p([0.0, 0.0]) == 1.0


def test_sign_flip_monte_carlo_is_seeded_and_bounded():
    from deepmath_lib.metrics import sign_flip_p

    d = [1.0] * 30  # all one way: exact p = 2 / 2^30; the sampled test can only say < 1 / (n + 1)
    assert sign_flip_p(d, n_perm=999, seed=3) == 1 / 1000
    mixed = [1, -1] * 15 + [0.5]
    assert sign_flip_p(mixed, seed=1) == sign_flip_p(mixed, seed=1)
    assert sign_flip_p(mixed) > 0.5


def test_holm_on_a_known_example():
    from deepmath_lib.metrics import holm

    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, float("nan"), 0.02])  # NaN is not in the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_paired_interval_narrower_than_unpaired_on_correlated_outcomes():
    import numpy as np

    from deepmath_lib.metrics import bootstrap_ci, paired_diff

    rng = np.random.default_rng(0)
    n = 200
    b = (rng.random(n) < 0.5).astype(float)  # before: half right
    a = b.copy()
    flip = rng.choice(np.flatnonzero(b == 0), size=12, replace=False)
    a[flip] = 1.0  # after: the same problems right, plus 12 more
    r = paired_diff(a, b, test="mcnemar")
    assert r["diff"] == pytest.approx(0.06)
    assert (r["a_only"], r["b_only"]) == (12, 0)
    assert r["p"] == 2 / 2**12
    # unpaired: each configuration resampled on its own, the two intervals' means subtracted
    boot = np.random.default_rng(0)
    ia, ib = boot.integers(0, n, (2000, n)), boot.integers(0, n, (2000, n))
    lo_u, hi_u = np.quantile(a[ia].mean(1) - b[ib].mean(1), [0.025, 0.975])
    lo_p, hi_p = r["ci"]
    assert lo_p > 0 and lo_u < 0  # paired: clearly positive; unpaired: cannot tell
    assert (hi_p - lo_p) < 0.5 * (hi_u - lo_u)
    assert r["ci"] == bootstrap_ci(a - b)  # resampled exactly like a marginal interval


def test_paired_diff_rejects_bad_input():
    from deepmath_lib.metrics import paired_diff

    with pytest.raises(ValueError, match="same problems"):
        paired_diff([1, 0], [1])
    with pytest.raises(ValueError, match="yes/no"):
        paired_diff([0.5, 1], [0, 1], test="mcnemar")
    with pytest.raises(ValueError, match="unknown test"):
        paired_diff([1], [0], test="t")


def _prec(config, pid, sample, correct, pred, model_tokens=10, total_tokens=12):
    return {
        "dataset": "d",
        "config": config,
        "problem_id": pid,
        "sample": sample,
        "gold": "1",
        "pred": pred,
        "correct": correct,
        "model_tokens": model_tokens,
        "total_tokens": total_tokens,
    }


def test_compare_configs_pairs_problems_and_adjusts():
    from deepmath_lib.metrics import COMPARISON_COLUMNS, compare_configs

    recs = []
    for i in range(12):  # agent right on all 12, baseline on 2; two samples each, both alike
        for s in range(2):
            recs.append(_prec("agent", f"p{i:02d}", s, True, "1", model_tokens=5, total_tokens=9))
            ok = i < 2
            recs.append(
                _prec("baseline", f"p{i:02d}", s, ok, "1" if ok else "2", model_tokens=8, total_tokens=8)
            )
    t = compare_configs(recs)
    assert list(t.columns) == COMPARISON_COLUMNS
    assert len(t) == 1  # only agent vs baseline is present
    r = t.iloc[0]
    assert (r.a, r.b, r.k, r.n_problems) == ("agent", "baseline", 2, 12)
    assert r.maj_diff == pytest.approx(10 / 12)
    assert (r.maj_a_only, r.maj_b_only) == (10, 0)
    assert r.maj_p == 2 / 2**10 and r.maj_p_holm == r.maj_p  # a family of one
    assert r.mean_p == 2 / 2**10  # 10 non-zero differences of 1: exact sign-flip, same as McNemar here
    assert r.model_tokens_diff == pytest.approx(-3) and r.total_tokens_diff == pytest.approx(1)
    assert r.model_tokens_diff_ci_low == r.model_tokens_diff_ci_high == pytest.approx(-3)


def test_compare_configs_needs_shared_problems():
    from deepmath_lib.metrics import compare_configs

    recs = [_prec("agent", "p1", 0, True, "1"), _prec("baseline", "p2", 0, True, "1")]
    with pytest.raises(ValueError, match="share no problem"):
        compare_configs(recs)
