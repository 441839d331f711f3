"""Loaders against local fixtures in each dataset's real schema; the hub is faked (no network in tests)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from deepmath_lib import datasets as dsmod
from deepmath_lib.datasets import DatasetError, DatasetWarning, load_problems, load_reference
from deepmath_lib.paths import REPO_ROOT

FIX = Path(__file__).parent / "fixtures"


def _load_quiet(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = load_problems(*args, **kwargs)
    return rows, [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]


def test_math500_jsonl_normalised_and_count_reported():
    rows, msgs = _load_quiet(str(FIX / "math500.jsonl"))
    assert [set(r) for r in rows] == [{"id", "problem", "answer"}] * 4
    assert rows[0]["id"] == "test/precalculus/807.json"
    assert rows[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert rows[1]["answer"] == "26000"
    assert any("MATH-500" in m and "expected 500" in m and "found 4" in m for m in msgs)


def test_aime_parquet_and_jsonl_use_question_field():
    for name in ("aime2025_I.parquet", "aime2025.jsonl"):
        rows, msgs = _load_quiet(str(FIX / name))
        assert len(rows) == 3
        assert rows[0] == {
            "id": "0",
            "problem": "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b$.",
            "answer": "70",
        }
        assert any("AIME 2025" in m and "expected 30" in m for m in msgs)


def test_hmmt_ids_from_problem_idx():
    rows, msgs = _load_quiet(str(FIX / "hmmt_feb_2025.jsonl"))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert [r["answer"] for r in rows] == ["103", "3375"]
    assert any("HMMT Feb 2025" in m and "found 2" in m for m in msgs)


def test_hle_keeps_math_exact_match_text_only():
    rows, _ = _load_quiet(str(FIX / "hle.parquet"))
    assert [r["answer"] for r in rows] == ["4", "3"]
    assert all(r["id"].startswith("66") for r in rows)


def test_bad_rows_reported_by_id_and_skipped():
    with pytest.warns(DatasetWarning) as record:
        rows = load_problems(str(FIX / "math500_bad_rows.jsonl"))
    assert [r["id"] for r in rows] == ["test/algebra/2795.json"]
    msg = " ".join(str(w.message) for w in record)
    for bad_id in ("empty_answer", "empty_problem", "missing_answer", "null_answer"):
        assert f"test/bad/{bad_id}.json" in msg
    assert "skipped 4 bad row(s)" in msg


def test_n_takes_first_valid_problems():
    rows, _ = _load_quiet(str(FIX / "math500.jsonl"), n=2)
    assert [r["id"] for r in rows] == ["test/precalculus/807.json", "test/algebra/2795.json"]


def test_unknown_name_and_missing_path_raise_value_error():
    assert issubclass(DatasetError, ValueError)
    with pytest.raises(ValueError, match="no_such_set") as err:
        load_problems("no_such_set")
    for name in dsmod.KNOWN_NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="missing.jsonl"):
        load_problems("/tmp/definitely/missing.jsonl")


def test_json_list_and_field_aliases(tmp_path):
    path = tmp_path / "custom.json"
    path.write_text(
        json.dumps([{"question": "1+1?", "expected_answer": 2}, {"problem": "2+2?", "gold": 4.0}])
    )
    rows, msgs = _load_quiet(str(path))
    assert rows == [
        {"id": "0", "problem": "1+1?", "answer": "2"},
        {"id": "1", "problem": "2+2?", "answer": "4"},
    ]
    assert msgs == []  # unknown dataset: no count check


def test_saved_hf_dataset_directories(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [json.loads(line) for line in (FIX / "hmmt_feb_2025.jsonl").read_text().splitlines()]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hmmt"))
    got, _ = _load_quiet(str(tmp_path / "hmmt"))
    assert [r["id"] for r in got] == ["1", "2"]

    aime = [json.loads(line) for line in (FIX / "aime2025.jsonl").read_text().splitlines()]
    DatasetDict({"test": Dataset.from_list(aime), "train": Dataset.from_list(aime[:1])}).save_to_disk(
        str(tmp_path / "aime_dd")
    )
    assert len(_load_quiet(str(tmp_path / "aime_dd"))[0]) == 3  # prefers test
    assert len(_load_quiet(str(tmp_path / "aime_dd"), split="train")[0]) == 1
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_problems(str(tmp_path / "aime_dd"), split="dev")


def test_nano_uses_generator_lazily(monkeypatch):
    calls = []

    def generate_problems(n, split="train"):
        calls.append((n, split))
        return [
            {"id": f"nano-{i}", "problem": f"{i}+1?", "answer": str(i + 1), "kind": "add"} for i in range(n)
        ]

    monkeypatch.setattr(dsmod, "generate_problems", generate_problems)
    rows = load_problems("nano")
    assert calls == [(200, "eval")] and len(rows) == 200
    assert rows[0] == {"id": "nano-0", "problem": "0+1?", "answer": "1", "kind": "add"}
    assert len(load_problems("nano", n=5)) == 5 and calls[-1] == (5, "eval")


def _fake_hub(monkeypatch, tables):
    import datasets

    seen = []

    def load_dataset(path, name=None, split=None, **kwargs):
        seen.append((path, name, split))
        if (path, name) not in tables:
            raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode is enabled)")
        return tables[(path, name)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return seen


def test_hub_aime_concatenates_parts_and_checks_count(monkeypatch):
    part = [{"question": f"q{i}", "answer": str(i)} for i in range(15)]
    seen = _fake_hub(
        monkeypatch,
        {("opencompass/AIME2025", "AIME2025-I"): part, ("opencompass/AIME2025", "AIME2025-II"): part},
    )
    rows, msgs = _load_quiet("aime2025")
    assert seen == [
        ("opencompass/AIME2025", "AIME2025-I", "test"),
        ("opencompass/AIME2025", "AIME2025-II", "test"),
    ]
    assert len(rows) == 30 and msgs == []
    assert rows[0]["id"] == "AIME2025-I-1" and rows[-1]["id"] == "AIME2025-II-15"


def test_hub_math500_short_count_warns(monkeypatch):
    rows = [{"problem": f"p{i}", "answer": "1", "unique_id": f"u{i}"} for i in range(499)]
    seen = _fake_hub(monkeypatch, {("HuggingFaceH4/MATH-500", None): rows})
    got, msgs = _load_quiet("HuggingFaceH4/MATH-500", n=10)
    assert seen[0][2] == "test" and len(got) == 10
    assert any("MATH-500" in m and "found 499" in m for m in msgs)


def test_hub_hmmt_uses_train_split_and_hle_filters(monkeypatch):
    hle_rows = [
        dict(r) for r in __import__("pyarrow.parquet").parquet.read_table(FIX / "hle.parquet").to_pylist()
    ]
    seen = _fake_hub(
        monkeypatch,
        {
            ("MathArena/hmmt_feb_2025", None): [{"problem_idx": 1, "problem": "x", "answer": "1"}],
            ("cais/hle", None): hle_rows,
        },
    )
    _load_quiet("hmmt_feb2025")
    assert seen[-1] == ("MathArena/hmmt_feb_2025", None, "train")
    rows, _ = _load_quiet("hle_math")
    assert [r["answer"] for r in rows] == ["4", "3"]


def test_hub_offline_message_says_how_to_pass_a_local_path(monkeypatch):
    _fake_hub(monkeypatch, {})
    with pytest.raises(ValueError) as err:
        load_problems("math500")
    msg = str(err.value)
    assert "HuggingFaceH4/MATH-500" in msg and "local" in msg and ".jsonl" in msg
    with pytest.raises(ValueError, match="gated"):
        load_problems("hle_math")


def test_reference_table():
    ref = load_reference()
    assert list(ref.columns) == ["dataset", "config", "maj_at_16", "mean_tokens", "source"]
    assert len(ref) == 16
    row = ref[(ref.dataset == "hmmt_feb2025") & (ref.config == "deepmath")].iloc[0]
    assert row.maj_at_16 == pytest.approx(0.4889) and row.mean_tokens == 7706
    assert ref.set_index(["dataset", "config"]).loc[("aime2025", "baseline"), "mean_tokens"] == 16797
    assert ref["source"].str.contains("huggingface.co/blog/intel-deepmath").all()


def test_real_hub_loader_offline_fails_with_local_path_hint(tmp_path):
    """The real `datasets.load_dataset` in offline mode (fresh cache): a clear DatasetError, quickly."""
    import os
    import subprocess

    code = (
        "from deepmath_lib.datasets import load_problems\n"
        "try:\n    load_problems('hmmt_feb2025')\nexcept ValueError as e:\n    print('ERR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=FIX.parents[1]
    )
    assert out.stdout.startswith("ERR could not load HMMT Feb 2025"), out.stdout + out.stderr
    assert "pass a local copy" in out.stdout


def test_smol_heldout_set_is_the_seeded_generator_split_and_disjoint_from_training():
    from deepmath_lib.grpo import heldout_problems, train_problems
    from deepmath_lib.nano import generate_problems
    from deepmath_lib.profiles import get_profile

    smol = get_profile("smol")
    held = heldout_problems(smol)
    committed = [
        json.loads(line)
        for line in (REPO_ROOT / "deepmath_lib/data/heldout/heldout200.jsonl").read_text().splitlines()
    ]
    assert len(held) == len(committed) == 200
    assert committed == generate_problems(200, split="heldout", seed=0)  # the file is what the seed gives
    assert [p["problem"] for p in held] == [p["problem"] for p in committed]
    # none of them is a training problem, at any training-set size the profiles use
    train = {p["problem"] for p in train_problems(smol, n=4000)}
    assert train and not train & {p["problem"] for p in committed}
    assert load_problems("heldout200", n=5) == held[:5]


def test_validation_problems_are_neither_training_nor_held_out():
    from deepmath_lib.grpo import train_problems
    from deepmath_lib.profiles import get_profile
    from experiments.common import validation_problems

    prof = get_profile("smol")
    val = validation_problems(prof, 80)
    texts = {p["problem"] for p in val}
    assert len(val) == 80 and len(texts) == 80
    assert not texts & {p["problem"] for p in train_problems(prof)}
    assert not texts & {p["problem"] for p in load_problems("heldout200")}
    assert [p["problem"] for p in validation_problems(prof, 80)] == [p["problem"] for p in val]


def test_hub_training_split_reads_only_problem_and_answer_columns(monkeypatch):
    """OpenMathReasoning's `tir` split (1.7M rows, long solution columns): the loader selects the problem and
    answer columns before any row becomes a Python object. The fake hub returns a real `datasets.Dataset` whose
    every conversion to Python objects fails while the solution column is still there."""
    import datasets

    class Big(datasets.Dataset):
        def _check(self):
            assert set(self.column_names) == {"problem", "expected_answer"}, self.column_names

        def __iter__(self):
            self._check()
            return super().__iter__()

        def __getitem__(self, key):
            self._check()
            return super().__getitem__(key)

        def to_list(self):
            self._check()
            return super().to_list()

        def to_dict(self, *args, **kwargs):
            self._check()
            return super().to_dict(*args, **kwargs)

        def to_pandas(self, *args, **kwargs):
            self._check()
            return super().to_pandas(*args, **kwargs)

    base = datasets.Dataset.from_dict(
        {
            "problem": [f"What is {i} + {i}?" for i in range(6)] + ["What is 0 + 0?"],
            "expected_answer": [str(2 * i) for i in range(6)] + ["0"],
            "generated_solution": ["x" * 1000] * 7,
            "problem_type": ["has_answer_extracted"] * 7,
        }
    )
    big = Big(base.data, info=base.info, split=base.split)
    seen = _fake_hub(monkeypatch, {("nvidia/OpenMathReasoning", None): big})
    rows = dsmod.load_train_problems("nvidia/OpenMathReasoning", seed=0)
    assert seen == [("nvidia/OpenMathReasoning", None, "tir")]
    assert sorted(r["problem"] for r in rows) == sorted(
        f"What is {i} + {i}?" for i in range(6)
    )  # deduplicated
    assert all(set(r) == {"id", "problem", "answer"} for r in rows)
    assert {r["problem"]: r["answer"] for r in rows}["What is 5 + 5?"] == "10"
    with pytest.raises(AssertionError):  # the guard is live: the full table would have failed
        list(big)


def test_hub_training_split_without_an_answer_column_names_its_columns(monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict({"problem": ["1+1?"], "solution": ["2"]})
    _fake_hub(monkeypatch, {("someone/data", None): ds})
    with pytest.raises(DatasetError, match=r"columns \['problem', 'solution'\].*answer column"):
        dsmod.load_train_problems("someone/data")
