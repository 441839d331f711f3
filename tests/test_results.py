"""The result store: round trip, duplicates, torn lines, and the resume guarantee under SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from deepmath_lib.results import (
    EVAL_SUMMARY_COLUMNS,
    MAX_TEXT_CHARS,
    ResultStore,
    eval_summary_path,
    key,
    read_records,
    samples_path,
    write_eval_summary,
    write_summary,
)

REPO = Path(__file__).resolve().parents[1]


def rec(dataset="math500", config="deepmath", pid="p1", sample=0, **extra) -> dict:
    base = {
        "dataset": dataset,
        "config": config,
        "problem_id": pid,
        "sample": sample,
        "problem": "1+1?",
        "gold": "2",
        "pred": "2",
        "correct": True,
        "finish_reason": "answer",
        "n_calls": 1,
        "n_calls_ok": 1,
        "model_tokens": 10,
        "total_tokens": 14,
        "text": "<tool_call>\nprint(1+1)\n</tool_call>\n```output\n2\n```\n\\boxed{2}",
    }
    base.update(extra)
    return base


def lines_of(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


def test_round_trip_keys_and_len(tmp_path):
    store = ResultStore(tmp_path / "sub" / "s.jsonl")
    assert len(store) == 0 and store.done_keys() == set() and store.records() == []
    assert (
        store.append(rec(sample=0)) and store.append(rec(sample=1)) and store.append(rec(pid=7, sample="2"))
    )
    assert len(store) == 3
    assert store.done_keys() == {
        ("math500", "deepmath", "p1", 0),
        ("math500", "deepmath", "p1", 1),
        ("math500", "deepmath", "7", 2),
    }
    assert (
        key(rec(pid=7, sample="2")) in ResultStore(store.path).done_keys()
    )  # a fresh instance sees the same
    assert store.records()[0] == rec(sample=0)
    assert rec(sample=1) in store


def test_append_refuses_duplicates_and_read_keeps_first(tmp_path):
    path = tmp_path / "s.jsonl"
    store = ResultStore(path)
    assert store.append(rec(pred="first"))
    assert not store.append(rec(pred="second"))
    assert len(lines_of(path)) == 1
    with path.open("a") as fh:  # a duplicate written by someone else
        fh.write(json.dumps(rec(pred="third")) + "\n")
    assert [r["pred"] for r in ResultStore(path).records()] == ["first"]
    assert not ResultStore(path).append(rec(pred="fourth"))


def test_missing_key_field_rejected(tmp_path):
    with pytest.raises(KeyError, match="sample"):
        ResultStore(tmp_path / "s.jsonl").append({"dataset": "d", "config": "c", "problem_id": "p"})


def test_torn_last_line_ignored_then_truncated_on_append(tmp_path):
    path = tmp_path / "s.jsonl"
    store = ResultStore(path)
    for i in range(3):
        store.append(rec(sample=i))
    full = json.dumps(rec(sample=3)).encode()
    with path.open("ab") as fh:  # a writer killed half-way through a line
        fh.write(full[: len(full) // 2])
    fresh = ResultStore(path)
    assert len(fresh) == 3 and (("math500", "deepmath", "p1", 3)) not in fresh.done_keys()
    assert fresh.append(rec(sample=3))
    rows = lines_of(path)
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]


def test_torn_only_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"dataset": "d", "con')
    store = ResultStore(path)
    assert store.records() == []
    store.append(rec())
    assert len(lines_of(path)) == 1


def test_long_text_truncated_and_values_made_json_safe(tmp_path):
    import numpy as np

    store = ResultStore(tmp_path / "s.jsonl")
    text = "A" * 15_000 + "MIDDLE" + "Z" * 14_000 + "\\boxed{42}"
    store.append(rec(text=text, model_tokens=np.int64(5), mean=float("nan"), extra=(1, 2)))
    row = lines_of(store.path)[0]
    assert len(row["text"]) == MAX_TEXT_CHARS and row["text_chars"] == len(text)
    assert (
        row["text"].startswith("AAA")
        and row["text"].endswith("\\boxed{42}")
        and "characters cut" in row["text"]
    )
    assert row["model_tokens"] == 5 and row["mean"] is None and row["extra"] == [1, 2]
    assert "NaN" not in store.path.read_text()


def test_read_records_from_folder(tmp_path):
    ResultStore(tmp_path / "b.jsonl").append(rec(config="agent"))
    ResultStore(tmp_path / "a.jsonl").append(rec(config="baseline"))
    assert [r["config"] for r in read_records(tmp_path)] == ["baseline", "agent"]


WRITER = textwrap.dedent(
    """
    import random, sys, time
    sys.path.insert(0, {repo!r})
    from deepmath_lib.results import ResultStore, key
    path, seed = sys.argv[1], int(sys.argv[2])
    store = ResultStore(path)
    done = store.done_keys()
    rng = random.Random(seed)
    for dataset in ("math500", "aime2025"):
        for config in ("baseline", "agent", "grpo", "deepmath"):
            for pid in range(8):
                for sample in range(4):
                    r = {{"dataset": dataset, "config": config, "problem_id": f"p{{pid}}", "sample": sample,
                         "correct": rng.random() < 0.5, "n_calls": rng.randint(0, 4), "finish_reason": "answer",
                         "text": "x" * rng.randint(10, 30000) + "\\\\boxed{{1}}"}}
                    if key(r) in done:
                        continue
                    assert store.append(r)
                    time.sleep(0.004)
    print("COMPLETE", flush=True)
    """
)
ALL_KEYS = {
    (d, c, f"p{p}", s)
    for d in ("math500", "aime2025")
    for c in ("baseline", "agent", "grpo", "deepmath")
    for p in range(8)
    for s in range(4)
}


def test_resume_after_repeated_sigkill(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    path = tmp_path / "samples.jsonl"
    rng = random.Random(1234)
    interrupted = 0
    for attempt in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(attempt)], stdout=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.15, 0.45))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        if b"COMPLETE" not in out:
            interrupted += 1
        if attempt == 2 and path.exists():  # also leave a torn line, as a writer killed mid-write would
            with path.open("ab") as fh:
                fh.write(b'{"dataset": "math500", "config": "agent", "problem_id": "p9", "sam')
        keys = ResultStore(path).done_keys()
        assert keys <= ALL_KEYS
    assert interrupted >= 3, "the kills should land mid-run"
    done = subprocess.run(
        [sys.executable, str(script), str(path), "99"], capture_output=True, text=True, timeout=120
    )
    assert "COMPLETE" in done.stdout, done.stderr
    rows = lines_of(path)  # every line is valid JSON, the file ends with a newline
    keys = [key(r) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated records"
    assert set(keys) == ALL_KEYS
    assert len(ResultStore(path)) == len(ALL_KEYS)


def test_write_summary_atomic_and_eval_summary(tmp_path):
    df = pd.DataFrame(
        [{c: 1 for c in EVAL_SUMMARY_COLUMNS} | {"dataset": "nano", "config": "agent", "mean_calls": 2}]
    )
    df = df[["mean_calls"] + list(EVAL_SUMMARY_COLUMNS)]
    path = write_eval_summary(df, "nano", results_root=tmp_path)
    assert path == eval_summary_path("nano", tmp_path) == tmp_path / "nano" / "eval_summary.csv"
    back = pd.read_csv(path)
    assert list(back.columns) == list(EVAL_SUMMARY_COLUMNS) + ["mean_calls"]
    assert sorted(os.listdir(path.parent)) == ["eval_summary.csv"]  # no temp file left behind
    with pytest.raises(ValueError, match="maj_at_k"):
        write_eval_summary(df.drop(columns=["maj_at_k"]), "nano", results_root=tmp_path)
    write_summary(pd.DataFrame({"a": [1, 2]}), tmp_path / "x" / "t.csv")
    assert (tmp_path / "x" / "t.csv").read_text() == "a\n1\n2\n"


def test_samples_path(tmp_path):
    assert (
        samples_path("nano", "nano", "agent", tmp_path) == tmp_path / "nano" / "samples" / "nano__agent.jsonl"
    )
    assert samples_path("paper", "/data/my set.jsonl", "grpo", tmp_path).name == "my_set__grpo.jsonl"
