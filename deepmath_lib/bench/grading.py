"""Grading throughput: ``is_equivalent`` on a realistic synthetic mix, in a fresh process (cold caches).

8,000 rows over a few hundred distinct golds (integers, fractions, roots, intervals, tuples, text, degrees,
thousands separators, expressions); each prediction is a bare answer or a whole solution text ending in a box,
in several boxes, or in no box at all ("The final answer is $…$", or nothing), right (in another equivalent form)
or wrong, with the repeats sampling produces. With ``suite``, also grades the labelled suite
(``tests/fixtures/grading_suite.jsonl``) with ours and with bare math-verify (default ``parse`` and ``verify``, gold
wrapped in ``$…$``), side by side. The last line printed is one JSON object
(``{"n": ..., "seconds": ..., "rows_per_s": ..., "suite": {...}}``).

    deepmath bench grading [--n 8000] [--suite]
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from .. import grading
from ..grading import extract_answer, is_equivalent
from ..paths import REPO_ROOT

SUITE = REPO_ROOT / "tests" / "fixtures" / "grading_suite.jsonl"

FILLER = (
    "We first rewrite the expression. Let $a = {a}$ and $b = {b}$; then $a + b = {c}$ and "
    "$\\frac{{a}}{{b}} = \\frac{{{a}}}{{{b}}}$. Checking the small cases: $n=1$ gives {a}, $n=2$ gives {b}. "
)


def _forms(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent renderings of it, and wrong answers."""
    kind = rng.choice(
        ["int", "int", "int", "frac", "sqrt", "interval", "tuple", "text", "deg", "big", "expr"]
    )
    if kind == "int":
        v = rng.randint(-50, 999)
        return str(v), [str(v), f"{v}.0", f"x = {v}"], [str(v + d) for d in (1, -1, 2, 10)]
    if kind == "frac":
        p, q = rng.randint(1, 20), rng.choice([2, 3, 4, 5, 7, 8])
        forms = [f"\\frac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\dfrac{{{p}}}{{{q}}}"]
        if q in (2, 4, 5, 8):
            forms.append(str(p / q))
        return f"\\frac{{{p}}}{{{q}}}", forms, [f"\\frac{{{p + 1}}}{{{q}}}", f"{p}/{q + 1}", str(p * q)]
    if kind == "sqrt":
        a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
        return (
            f"{a}\\sqrt{{{b}}}",
            [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a} \\cdot {b}^{{1/2}}"],
            [f"{a + 1}\\sqrt{{{b}}}", f"\\sqrt{{{b}}}", str(a * b)],
        )
    if kind == "interval":
        lo, hi = rng.randint(-9, 0), rng.randint(1, 9)
        return (
            f"[{lo}, {hi})",
            [f"[{lo},{hi})", f"\\left[{lo}, {hi}\\right)"],
            [f"({lo}, {hi})", f"[{lo}, {hi}]"],
        )
    if kind == "tuple":
        x, y = rng.randint(-9, 9), rng.randint(-9, 9)
        return (
            f"({x}, {y})",
            [f"({x},{y})", f"\\left({x}, {y}\\right)"],
            [f"({y}, {x + 1})", f"({x}, {y + 1})"],
        )
    if kind == "text":
        w = rng.choice(["yes", "no", "Monday", "even", "odd"])
        other = {"yes": "no", "no": "yes", "Monday": "Tuesday", "even": "odd", "odd": "even"}[w]
        return f"\\text{{{w}}}", [w, w.upper(), f"\\text{{{w.capitalize()}}}"], [other, f"\\text{{{other}}}"]
    if kind == "deg":
        v = rng.choice([30, 45, 60, 90, 120, 135])
        return f"{v}^\\circ", [str(v), f"{v}^{{\\circ}}", f"{v}°"], [str(180 - v + 1), f"{v + 15}^\\circ"]
    if kind == "big":
        v = rng.randint(1000, 999_999)
        return (
            str(v),
            [f"{v:,}", f"{v:,}".replace(",", "{,}"), f"{v:,}".replace(",", "\\,"), str(v)],
            [str(v + 1), f"{v // 10:,}"],
        )
    a = rng.randint(1, 5)
    return (
        f"x^2 + {2 * a}x + {a * a}",
        [f"(x+{a})^2", f"x^{{2}}+{2 * a}x+{a * a}", f"{a * a} + {2 * a}x + x^2"],
        [f"(x+{a + 1})^2", f"x^2+{a * a}"],
    )


def make_rows(n: int = 8000, n_golds: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic (gold, pred) rows: ~45% right, ~55% wrong or unanswered; half bare answers, half solutions."""
    rng = random.Random(seed)
    problems = [_forms(rng) for _ in range(n_golds)]
    rows = []
    for i in range(n):
        gold, right, wrong = problems[i % n_golds]
        r = rng.random()
        ans = rng.choice(right) if r < 0.45 else rng.choice(wrong) if r < 0.92 else f"{rng.randint(0, 10**6)}"
        if rng.random() < 0.5:
            pred = ans
        else:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            body = "".join(FILLER.format(a=a + k, b=b, c=a + b + k) for k in range(rng.randint(3, 12)))
            kind = rng.random()
            if kind < 0.05:
                pred = body + "I could not finish."  # no box: math-verify's extraction finds some formula
            elif kind < 0.15:
                pred = body + f"Final Answer: The final answer is ${ans}$. I hope it is correct."  # no box
            elif kind < 0.25:
                pred = (
                    body + f"The answers are $\\boxed{{{ans}}}$ and $\\boxed{{{rng.choice(wrong)}}}$."
                )  # several
            elif kind < 0.4:
                pred = (
                    body
                    + f"A first guess is $\\boxed{{{rng.choice(wrong)}}}$, but rechecking, \\boxed{{{ans}}}."
                )
            else:
                pred = body + f"Therefore the answer is $\\boxed{{{ans}}}$."
        rows.append((gold, pred))
    return rows


def measure(n: int = 8000, golds: int = 400, seed: int = 0) -> dict:
    """Time grading of the synthetic rows in this process (call it in a fresh one for cold caches)."""
    rows = make_rows(n, golds, seed)
    t0 = time.perf_counter()
    is_equivalent(
        "1", "1"
    )  # math-verify's import + first parse (antlr) inside the timing: it is part of the cost
    n_equal = sum(is_equivalent(g, p) for g, p in rows)
    seconds = time.perf_counter() - t0
    return {
        "n": len(rows),
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(rows) / seconds, 1),
        "distinct_golds": len({g for g, _ in rows}),
        "distinct_pred_answers": len({extract_answer(p) for _, p in rows}),
        "equal_rate": round(n_equal / len(rows), 3),
    }


def bare_math_verify(gold: str, pred: str) -> bool:
    """The reference our extraction is measured against: math-verify's default `parse` and `verify`, gold wrapped
    in `$…$`, timeouts off (as ours in the host process)."""
    from math_verify import parse, verify

    grading._mv()  # silences math-verify's "timeout disabled" warning
    try:
        return bool(
            verify(
                parse(f"${gold}$", parsing_timeout=None),
                parse(pred, parsing_timeout=None),
                timeout_seconds=None,
            )
        )
    except Exception:
        return False


def suite_agreement(path: Path = SUITE) -> dict:
    """Agreement with the labels of the suite: ours and bare math-verify, overall and per class."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict = {"suite_n": len(rows)}
    for name, grade in (("ours", is_equivalent), ("bare_math_verify", bare_math_verify)):
        hits = [grade(r["gold"], r["pred"]) == r["label"] for r in rows]
        out[name] = round(sum(hits) / len(rows), 3)
        out[f"{name}_by_class"] = {
            c: f"{sum(h for h, r in zip(hits, rows, strict=True) if r['class'] == c)}/"
            f"{sum(r['class'] == c for r in rows)}"
            for c in sorted({r["class"] for r in rows})
        }
    return out
