"""The command line as a new user meets it: bad input gets one clear line on stderr and a non-zero exit, before
any model is loaded."""

import json
import subprocess
import sys

import pytest

from deepmath_lib.cli import main
from deepmath_lib.paths import REPO_ROOT


def _deepmath(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepmath_lib.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_eval_on_rows_without_answers_stops_before_loading_a_model(tmp_path, capsys):
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i}+{i}?"}) + "\n" for i in range(3)))
    rc = main(
        ["eval", "--datasets", str(data), "--configs", "baseline", "--results-root", str(tmp_path / "r")]
    )
    out, err = capsys.readouterr()
    assert rc == 2
    assert "no problems with an answer" in err and "questions.jsonl" in err
    assert "weights:" not in out and not (tmp_path / "r").exists()  # nothing loaded, nothing written


def test_eval_names_a_missing_dataset_not_a_missing_model(tmp_path, capsys):
    rc = main(["eval", "--profile", "smol", "--datasets", str(tmp_path / "nope.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jsonl" in err and "no trained model" not in err


def test_eval_refuses_identical_greedy_samples(capsys):
    rc = main(["eval", "--profile", "smol", "--samples", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and "greedily" in err and "--samples 1" in err


@pytest.mark.parametrize("timeout", ["-1", "0", "nan"])
def test_exec_rejects_a_non_positive_timeout(timeout):
    res = _deepmath("exec", "--timeout", timeout, stdin="print(1)")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: timeout must be a positive number")
    assert res.stdout == ""


def test_exec_syntax_error_shows_the_snippet_not_our_internals():
    res = _deepmath("exec", stdin="x = (\n")
    assert res.returncode == 0  # the snippet failing is data, not a command failure
    assert "SyntaxError" in res.stdout and "never closed" in res.stdout
    assert "compile(" not in res.stdout and "Traceback" not in res.stdout and ".py" not in res.stdout


def test_warnings_are_one_line_without_our_file_paths():
    res = _deepmath("exec", stdin="print(6*7)")
    assert res.stdout.strip() == "42"
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    assert len(lines) == len(set(lines))  # each at most once
    assert "deepmath_lib" not in res.stderr and ".py:" not in res.stderr
