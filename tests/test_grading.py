"""Answer grading: extraction, math-verify equivalence edge cases, majority vote and `deepmath grade`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepmath_lib.cli import grade_main
from deepmath_lib.grading import (
    extract_answer,
    extract_boxed,
    gold_is_parseable,
    is_equivalent,
    majority_vote,
)

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}} and more", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed {7}", "7"),
        ("\\fbox{x+1}", "x+1"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\boxed{1} then \\fbox{3}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not count
        ("\\boxed{ 5 }", "5"),
        ("\\boxed{1} and \\boxed{\\frac{1}{2", None),  # the last box is unbalanced
        ("\\boxed{x", None),
        ("no box here: 42", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is \\boxed{12}.", "12"),
        ("  12  ", "12"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("yes", "yes"),
        ("x" * 33, None),  # a "word" too long to be an answer
        ("a" * 500, None),
        ("12\n13", "13"),  # two lines: math-verify's extraction, its last number
        ("\\boxed{12", None),  # a broken box is not a bare answer
        ("\\boxed{1} and \\boxed{\\frac{1}{2", None),
        ("", None),
        ("   ", None),
        # several final boxes: all of them, as a list
        ("\\boxed{1},\\boxed{2},\\boxed{3}", "1, 2, 3"),
        ("$\\boxed{(1, 2)}$, $\\boxed{(2, 1)}$", "(1, 2), (2, 1)"),
        ("\\boxed{k = 45} \\text{ and } \\boxed{n = 2}", "k = 45, n = 2"),
        ("$x = \\boxed{1}$ and $y = \\boxed{2}$.", "1, 2"),
        ("\\boxed{5} \\boxed{5}", "5"),  # a repeat is one answer
        ("\\boxed{2,3}", "2, 3"),  # a boxed list stays a list when read back
        # boxes with words between them are separate statements: the last one is the answer
        ("\\boxed{4}, no wait: \\boxed{5}", "5"),
        ("The answer is \\boxed{5}.\n\n**Final Answer**\n\\boxed{6}", "6"),
        # no box: math-verify's extraction of the final answer
        ("Final Answer: The final answer is $28\\%$. I hope it is correct.", "28\\%"),
        ("Answer $$ 9 $$", "9"),
        ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"),
        ("The roots are $1$, $2$ and $3$.", "1, 2, 3"),
        ("1000,99", "1000,99"),  # a bare answer; compared as 1000.99 and as a list
        ("1,000", "1,000"),  # thousands
        ("28 percent", "28\\%"),
        ("Let me think about it some more.", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# ----------------------------------------------------------------------------------------------- equivalence

EQUAL = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("0.5", "\\frac{1}{2}"),
    ("\\frac{1}{2}", "\\dfrac12"),
    ("\\sqrt{2}", "2^{1/2}"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("30^\\circ", "30"),
    ("30", "30^{\\circ}"),
    ("30^\\circ", "30°"),
    ("[1, 2)", "[1,2)"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("(1, 2)", "\\left(1, 2\\right)"),
    ("(1, 2, 3)", "(1,2,3)"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("\\text{yes}", "yes"),
    ("\\text{Yes}", "YES"),
    ("Yes", "\\text{yes}."),
    ("\\text{Monday}", "monday"),
    ("1000", "1,000"),
    ("1,000", "1000"),
    ("1000", "1{,}000"),
    ("1000", "1\\,000"),
    ("1000000", "1\\,000\\,000"),
    ("1000", "1 000"),
    ("1000.99", "1000,99"),  # a decimal comma, as math-verify reads plain text
    ("-2,1", "-2,1"),
    ("\\{-2, 1\\}", "-2,1"),  # ... or a list, as it reads LaTeX
    ("12", "12.0"),
    ("-3", "−3"),
    ("5", "x = 5"),
    ("x^2+2x+1", "(x+1)^2"),
    ("5", "$5$"),
    ("5", "We compute ... so the answer is \\boxed{5}."),
    ("5", "\\boxed{4}, no wait: \\boxed{5}"),  # last box wins
    ("\\boxed{\\frac{1}{2}}", "0.5"),  # a boxed gold is unwrapped too
    ("5", "We think long and hard about it. " * 5 + "It is 5"),  # no box: the final number is read
    ("{1,2,3}", "\\boxed{1},\\boxed{2},\\boxed{3}"),
    ("So the answer is \\boxed{1}, \\boxed{2}.", "2, 1"),  # a gold with several boxes
]

NOT_EQUAL = [
    ("\\frac{1}{2}", "0.51"),
    ("\\frac{1}{3}", "0.33"),
    ("\\sqrt{2}", "2"),
    ("\\pi", "3.14"),
    ("30^\\circ", "31"),
    ("[1, 2)", "(1, 2]"),
    ("[0, 1]", "(0, 1)"),
    ("(1, 2)", "(2, 1)"),  # an interval (or pair) is not its reverse
    ("(1, 2, 3)", "(3, 2, 1)"),  # tuples are ordered
    ("(1,0)", "1,000"),  # a thousands separator is not a pair
    ("2,3", "23"),
    ("1000.99", "1000,98"),
    ("1000", "100"),
    ("yes", "no"),
    ("\\text{Monday}", "Tuesday"),
    ("5", "\\boxed{5}, no wait: \\boxed{4}"),  # last box wins
    ("5", "\\boxed{5"),  # unbalanced
    ("5", ""),
    ("5", None),
    ("", "5"),
    ("", ""),
    ("5", "We think long and hard about it. " * 5 + "It is 6"),  # no box: the final number is read
    ("x^2+1", "x^2-1"),
]


@pytest.mark.parametrize("gold, pred", EQUAL)
def test_equivalent(gold, pred):
    assert is_equivalent(gold, pred) is True


@pytest.mark.parametrize("gold, pred", NOT_EQUAL)
def test_not_equivalent(gold, pred):
    assert is_equivalent(gold, pred) is False


HAZARDS = [
    ("9^{9^{9}}", "5"),
    ("5", "9^{9^{9}}+1"),
    ("3", "\\gcd(9^{9^9}, 6)"),
    ("1", "\\binom{1000000000}{500000000}"),
    ("1", "(x+1)^{100000}"),
    ("2", "(10^{9})!"),
    ("1", "\\Gamma(10^{9})"),
    ("5", "\\boxed{" + "1+" * 5000 + "1}"),
    ("5", "{" * 3000 + "}" * 3000),
]


def test_hazardous_inputs_are_bounded_and_never_raise():
    t0 = time.perf_counter()
    for gold, pred in HAZARDS:
        assert is_equivalent(gold, pred) is False
    assert time.perf_counter() - t0 < 10


def test_grading_off_the_main_thread():
    pairs = EQUAL[:8] + NOT_EQUAL[:8] + HAZARDS[:4]
    expected = [True] * 8 + [False] * 8 + [False] * 4
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda gp: is_equivalent(*gp), pairs))
    assert got == expected
    # and a fresh thread works on a never-seen pair (no signal-based timeout involved)
    out = []
    t = threading.Thread(target=lambda: out.append(is_equivalent("\\frac{7}{9}", "14/18")))
    t.start()
    t.join()
    assert out == [True]


def test_non_string_inputs_never_raise():
    assert is_equivalent(5, "5") is False  # type: ignore[arg-type]
    assert is_equivalent("5", 5) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "gold, ok",
    [
        ("\\frac{1}{2}", True),
        ("42", True),
        ("\\text{yes}", True),
        ("(1, 2)", True),
        ("\\boxed{7}", True),
        ("", False),
        ("   ", False),
        ("}{", False),
    ],
)
def test_gold_is_parseable(gold, ok):
    assert gold_is_parseable(gold) is ok


# ----------------------------------------------------------------------------------------------- majority


def test_majority_over_equivalence_classes():
    preds = ["3", "1/2", "0.5", None, "\\boxed{\\frac{1}{2}}", "3"]
    assert majority_vote(preds) == ("1/2", 3)


def test_majority_tie_goes_to_earliest_class():
    assert majority_vote(["4", "3", "3", "4"]) == ("4", 2)
    assert majority_vote(["3", "4", "4", "3"]) == ("3", 2)
    assert majority_vote(["7", "8"]) == ("7", 1)


def test_majority_ignores_none_and_unanswered():
    assert majority_vote([None, "no box in this long text " * 10, "2"]) == ("2", 1)
    assert majority_vote([None, None]) == (None, 0)
    assert majority_vote([]) == (None, 0)


# ----------------------------------------------------------------------------------------------- deepmath grade


def test_grade_stream_good_rows():
    rows = [
        {"gold": "\\frac{1}{2}", "pred": "0.5", "id": 1},
        {"gold": "3", "pred": "so \\boxed{4}"},
    ]
    inp = io.StringIO("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    out = io.StringIO()
    assert grade_main(inp, out) == 0
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert got == [{**rows[0], "equal": True}, {**rows[1], "equal": False}]


def test_grade_stream_bad_rows(capsys):
    lines = [
        json.dumps({"gold": "1", "pred": "1"}),
        "{not json",
        json.dumps({"gold": "1"}),
        json.dumps({"gold": True, "pred": "1"}),  # a boolean is not a number in JSON
        json.dumps([1, 2]),
        json.dumps({"gold": "2", "pred": "\\boxed{2}"}),
    ]
    out = io.StringIO()
    assert grade_main(io.StringIO("\n".join(lines) + "\n"), out) == 1
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(got) == 6
    assert [r["equal"] for r in got] == [True, False, False, False, False, True]
    assert "error" not in got[0] and "error" not in got[5]
    assert "line 2" in got[1]["error"] and "JSON" in got[1]["error"]
    assert "line 3" in got[2]["error"] and "pred" in got[2]["error"]
    assert "line 4" in got[3]["error"] and "gold" in got[3]["error"]
    assert "line 5" in got[4]["error"]
    assert got[2]["gold"] == "1"  # the row is echoed back
    err = capsys.readouterr().err
    assert "line 2" in err and "line 3" in err and "line 4" in err and "line 5" in err


def test_grade_stream_grades_numeric_golds_and_preds():
    """JSONL datasets often store the gold as a number (`"gold": 2`): it is graded, and echoed back as given."""
    rows = [
        {"gold": 2, "pred": "so \\boxed{2}"},
        {"gold": 2, "pred": "\\boxed{3}"},
        {"gold": 0.5, "pred": "\\frac{1}{2}"},
        {"gold": "56211", "pred": 56211},
        {"gold": -7, "pred": -7.0},
    ]
    out = io.StringIO()
    assert grade_main(io.StringIO("".join(json.dumps(r) + "\n" for r in rows)), out) == 0
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["equal"] for r in got] == [True, False, True, True, True]
    assert got[0]["gold"] == 2 and "error" not in got[0]


def test_cli_grade_subprocess():
    stdin = "\n".join(
        [json.dumps({"gold": "1,000", "pred": "1000"}), json.dumps({"gold": "2", "pred": "3"}), "oops"]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath_lib.cli", "grade"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["equal"] for r in got] == [True, False, False]
    assert "line 3" in got[2]["error"] and "line 3" in proc.stderr
