"""Evaluation problem sets, normalised to ``{id, problem, answer}``.

``load_problems(name_or_path)`` accepts a short name (``math500``, ``aime2025``, ``hmmt_feb2025``, ``hle_math``,
``nano``), one of the hub ids behind them, a local ``.jsonl`` / ``.json`` / ``.parquet`` file, or a directory holding
a dataset saved with ``datasets.save_to_disk`` (or holding such files). Field names are detected (problem/question,
answer/expected_answer/gold, id/unique_id/problem_idx or the row index). Rows with an empty problem or a missing or
empty answer are reported with their id (a ``DatasetWarning``) and skipped; a count that differs from the benchmark's
known size (MATH-500: 500, AIME 2025: 30, HMMT Feb 2025: 30) is reported the same way, never an error.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .nano import generate_problems
from .paths import PACKAGE_DATA

PROBLEM_FIELDS = ("problem", "question")
ANSWER_FIELDS = ("answer", "expected_answer", "gold")
ID_FIELDS = ("id", "unique_id", "problem_idx")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


class DatasetWarning(UserWarning):
    """A dataset loaded, but something about it deserves a look (count, skipped rows, duplicate ids)."""


class DatasetError(ValueError):
    """A dataset could not be loaded: unknown name, missing path, unreadable file, hub unavailable."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a benchmark lives on the hub and how its rows look."""

    name: str
    label: str
    hub_id: str | None
    split: str | None
    configs: tuple[str | None, ...] = (None,)
    expected: int | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    local: str | None = (
        None  # a file shipped in the package (relative to deepmath_lib/data), read instead of the hub
    )


DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec(
        "math500", "MATH-500", "HuggingFaceH4/MATH-500", "test", expected=500, aliases=("math-500", "math")
    ),
    "aime2025": DatasetSpec(
        "aime2025",
        "AIME 2025",
        "opencompass/AIME2025",
        "test",
        configs=("AIME2025-I", "AIME2025-II"),
        expected=30,
        aliases=("aime", "aime_2025"),
    ),
    "hmmt_feb2025": DatasetSpec(
        "hmmt_feb2025",
        "HMMT Feb 2025",
        "MathArena/hmmt_feb_2025",
        "train",
        expected=30,
        aliases=("hmmt", "hmmt_feb_2025", "hmmt2025"),
    ),
    "hle_math": DatasetSpec(
        "hle_math", "HLE (math, exact match, text only)", "cais/hle", "test", aliases=("hle",)
    ),
    "nano": DatasetSpec("nano", "nano (synthetic)", None, "eval"),
    # smol's GRPO held-out set: 200 problems of the nano generator's "heldout" split (seed 0), committed before
    # training (deepmath_lib/data/heldout/README.md); disjoint from every training problem
    "heldout200": DatasetSpec(
        "heldout200",
        "held-out 200 (synthetic)",
        None,
        None,
        expected=200,
        local="heldout/heldout200.jsonl",
    ),
}
KNOWN_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset_label(name: str) -> str:
    """A display name for a dataset short name (the name itself when unknown)."""
    spec = DATASETS.get(name)
    return spec.label if spec else name


def resolve_name(name: str) -> str | None:
    """The short name for a short name, alias or hub id (case-insensitive); None when it is none of those."""
    key = name.strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases or (spec.hub_id and key == spec.hub_id.lower()):
            return spec.name
    return None


def _known_message() -> str:
    names = ", ".join(KNOWN_NAMES)
    hubs = ", ".join(s.hub_id for s in DATASETS.values() if s.hub_id)
    return (
        f"known names: {names} (or their hub ids: {hubs}); or pass a local .jsonl/.json/.parquet file "
        "or a directory holding a dataset saved with datasets' save_to_disk"
    )


# ----------------------------------------------------------------------------------------------- public API


def load_problems(name_or_path: str, n: int | None = None, split: str | None = None) -> list[dict]:
    """Load an evaluation set as a list of ``{"id", "problem", "answer"}`` dicts (nano rows also keep ``kind``).

    Args:
        name_or_path: a short name (see ``KNOWN_NAMES``), a known hub id, or a local file / saved-dataset directory.
        n: keep only the first ``n`` valid problems (the count check still looks at the full set).
        split: override the split (hub datasets and saved ``DatasetDict`` directories).

    Raises:
        DatasetError (a ValueError): unknown name, nonexistent path, unreadable file, or the hub is unreachable.
    """
    if n is not None and n < 0:
        raise DatasetError(f"n must be >= 0, got {n}")
    text = str(name_or_path)
    name = resolve_name(text)
    path = Path(text).expanduser()
    if name is not None and not path.exists():
        if name in GENERATORS:
            rows, label = GENERATORS[name](n, split or DATASETS[name].split), DATASETS[name].label
        elif DATASETS[name].local:
            rows, label = _read_local(PACKAGE_DATA / DATASETS[name].local, None), DATASETS[name].label
        else:
            rows, label = _load_hub(DATASETS[name], split), DATASETS[name].label
        kind = name
    elif path.exists():
        rows = _read_local(path, split)
        kind = _infer_kind(path, rows)
        label = f"{path} ({dataset_label(kind)})" if kind else str(path)
    else:
        raise DatasetError(f"unknown dataset or nonexistent path: {text!r}; {_known_message()}")

    if kind == "hle_math":
        rows = filter_hle(rows)
    problems = normalise_rows(rows, label)
    spec = DATASETS.get(kind or "")
    if spec is not None and spec.expected is not None and len(problems) != spec.expected:
        warnings.warn(
            f"{spec.label}: expected {spec.expected} problems, found {len(problems)} in {label}",
            DatasetWarning,
            stacklevel=2,
        )
    return problems[:n] if n is not None else problems


def filter_hle(rows: list[dict]) -> list[dict]:
    """HLE's math subset as the original evaluated it: category Math, exact-match answers, no image."""
    keep = []
    for row in rows:
        if "category" in row and row.get("category") != "Math":
            continue
        if "answer_type" in row and row.get("answer_type") != "exactMatch":
            continue
        if row.get("image"):
            continue
        keep.append(row)
    return keep


def normalise_rows(rows: list[dict], label: str = "dataset") -> list[dict]:
    """Map raw rows to ``{id, problem, answer}`` (plus ``kind`` when present); report and skip bad rows.

    Field names are detected per row among ``PROBLEM_FIELDS``, ``ANSWER_FIELDS`` and ``ID_FIELDS`` (first present
    wins); rows without an id get their row index. Answers become stripped strings. Duplicate ids get a suffix.
    """
    out: list[dict] = []
    bad: list[str] = []
    seen: dict[str, int] = {}
    dups: list[str] = []
    for index, row in enumerate(rows):
        pid = _first(row, ID_FIELDS)
        pid = str(index) if pid is None or str(pid).strip() == "" else str(pid).strip()
        problem = _first(row, PROBLEM_FIELDS)
        answer = _first(row, ANSWER_FIELDS)
        problem = "" if problem is None else str(problem).strip()
        answer = "" if answer is None else _answer_text(answer)
        if not problem or not answer:
            why = "empty problem" if not problem else "missing or empty answer"
            bad.append(f"{pid} ({why})")
            continue
        if pid in seen:
            seen[pid] += 1
            dups.append(pid)
            pid = f"{pid}#{seen[pid]}"
        else:
            seen[pid] = 1
        item = {"id": pid, "problem": problem, "answer": answer}
        if "kind" in row and row["kind"] is not None:
            item["kind"] = row["kind"]
        out.append(item)
    if bad:
        warnings.warn(
            f"{label}: skipped {len(bad)} bad row(s): {', '.join(bad)}",
            DatasetWarning,
            stacklevel=3,
        )
    if dups:
        warnings.warn(
            f"{label}: duplicate id(s) {sorted(set(dups))}; later copies renamed with a '#N' suffix",
            DatasetWarning,
            stacklevel=3,
        )
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _first(row: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def _answer_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float) and value != value:  # NaN from a pandas-written file
        return ""
    return str(value).strip()


def _load_nano(n: int | None, split: str = "eval") -> list[dict]:

    return list(generate_problems(n or 200, split=split))


# Data sets made by a generator rather than read: name -> f(n, split); splits train / heldout / eval are disjoint.
GENERATORS = {"nano": _load_nano}


def load_train_problems(source: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """Training problems `{id, problem, answer}` from a generator name (split "train"), a local JSONL/parquet/dir,
    or a hub dataset (e.g. fastragdev/openmathreasoning-tir: `problem`, `answer`; nvidia/OpenMathReasoning's `tir`
    split: `problem`, `expected_answer`). Hub and file rows are deduplicated by problem text and shuffled with
    `seed` before the first `n` are taken (OpenMathReasoning repeats each problem many times, in order)."""
    import random

    name = resolve_name(source)
    if name in GENERATORS:
        return load_problems(name, n=n, split="train")
    path = Path(source).expanduser()
    if path.exists():
        rows = _read_local(path, None)
    else:
        try:
            from datasets import load_dataset

            split = "tir" if source.lower() == "nvidia/openmathreasoning" else "train"
            ds = load_dataset(source, split=split)  # memory-mapped Arrow: nothing in Python objects yet
        except Exception as exc:
            raise DatasetError(
                f"could not load training data {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                "pass a local JSONL/parquet with `problem` and `answer` (or `expected_answer`) columns instead"
            ) from exc
        rows = _problem_answer_rows(ds, source)
    problems = normalise_rows(rows, source)
    seen: set[str] = set()
    unique = []
    for p in problems:
        key = " ".join(p["problem"].split()).lower()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    random.Random(seed).shuffle(unique)
    return unique[:n] if n is not None else unique


def _problem_answer_rows(ds, source: str) -> list[dict]:
    """The problem and answer columns of a `datasets.Dataset`, as row dicts. Only those two columns are selected
    before any row becomes Python objects: OpenMathReasoning's `tir` split has ~1.7M rows whose other columns (full
    generated solutions) would not fit in memory on every rank."""
    names = ds.column_names
    problem = next((c for c in PROBLEM_FIELDS if c in names), None)
    answer = next((c for c in ANSWER_FIELDS if c in names), None)
    if problem is None or answer is None:
        raise DatasetError(
            f"training data {source!r} has columns {names}; it needs a problem column ({' or '.join(PROBLEM_FIELDS)}) "
            f"and an answer column ({' or '.join(ANSWER_FIELDS)})"
        )
    return ds.select_columns([problem, answer]).to_list()


def _load_hub(spec: DatasetSpec, split: str | None) -> list[dict]:
    """Rows of a hub dataset (all its configs, concatenated); AIME rows get ``<config>-<number>`` ids."""
    try:
        from datasets import load_dataset
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DatasetError(f"the `datasets` package is needed to load {spec.hub_id}: {exc}") from exc
    use_split = split or spec.split
    rows: list[dict] = []
    for config in spec.configs:
        try:
            ds = load_dataset(spec.hub_id, config, split=use_split)
        except Exception as exc:
            gated = (
                f" {spec.hub_id} is gated: accept its terms on the hub and set HF_TOKEN."
                if spec.name == "hle_math"
                else ""
            )
            where = f"{spec.hub_id}" + (f" (config {config})" if config else "") + f", split {use_split}"
            raise DatasetError(
                f"could not load {spec.label} from the Hugging Face hub ({where}): {type(exc).__name__}: {exc}\n"
                f"If you are offline (HF_HUB_OFFLINE=1) or the hub is unreachable, pass a local copy instead: "
                f"a .jsonl/.json/.parquet file or a save_to_disk directory, e.g. "
                f"load_problems('/path/to/{spec.name}.jsonl') or `deepmath eval --datasets /path/to/{spec.name}.jsonl`."
                f"{gated}"
            ) from exc
        part = [dict(r) for r in ds]
        if config is not None and len(spec.configs) > 1:
            for i, row in enumerate(part):
                if _first(row, ID_FIELDS) is None:
                    row["id"] = f"{config}-{i + 1}"
        rows.extend(part)
    return rows


def _read_local(path: Path, split: str | None) -> list[dict]:
    if path.is_dir():
        return _read_dir(path, split)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"could not read {path}: {type(exc).__name__}: {exc}") from exc
    raise DatasetError(
        f"unsupported file type {path.suffix!r} for {path}; use one of {', '.join(FILE_SUFFIXES)}"
    )


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {lineno} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}: line {lineno} is not a JSON object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(path)  # JSON lines saved with a .json suffix
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            data = lists[0]
        elif all(isinstance(v, list) for v in data.values()) and data:  # column-oriented
            keys = list(data)
            data = [dict(zip(keys, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetError(f"{path}: expected a list of objects (or JSON lines)")
    return data


def _read_dir(path: Path, split: str | None) -> list[dict]:
    """A ``save_to_disk`` directory (Dataset or DatasetDict), else the data files inside it."""
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        from datasets import DatasetDict, load_from_disk

        try:
            ds = load_from_disk(str(path))
        except Exception as exc:
            raise DatasetError(
                f"could not load the saved dataset in {path}: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(ds, DatasetDict):
            if split is not None:
                if split not in ds:
                    raise DatasetError(f"{path} has no split {split!r}; splits: {sorted(ds)}")
                ds = ds[split]
            elif len(ds) == 1:
                ds = next(iter(ds.values()))
            else:
                preferred = [s for s in ("test", "train", "eval", "validation") if s in ds]
                if not preferred:
                    raise DatasetError(f"{path} holds several splits {sorted(ds)}; pass split=")
                ds = ds[preferred[0]]
        return [dict(r) for r in ds]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
    if not files:
        raise DatasetError(
            f"{path} is neither a saved dataset nor a folder of {'/'.join(FILE_SUFFIXES)} files"
        )
    rows: list[dict] = []
    for file in files:
        rows.extend(_read_local(file, split))
    return rows


def _infer_kind(path: Path, rows: list[dict]) -> str | None:
    """Which benchmark a local file holds, from its schema or, failing that, its name (for checks only)."""
    columns = set(rows[0]) if rows else set()
    if {"unique_id", "subject", "level"} <= columns:
        return "math500"
    if "problem_idx" in columns:
        return "hmmt_feb2025"
    if {"answer_type", "category"} <= columns:
        return "hle_math"
    if "kind" in columns:
        return "nano"
    stem = str(path).lower().replace("-", "").replace("_", "")
    for hint, name in (
        ("aime", "aime2025"),
        ("math500", "math500"),
        ("hmmt", "hmmt_feb2025"),
        ("hle", "hle_math"),
    ):
        if hint in Path(stem).name:
            return name
    return None


def load_reference(path: str | Path | None = None) -> Any:
    """The original's reported table (``deepmath_lib/data/original_results.csv``, package data) as a DataFrame.

    Columns: ``dataset, config, maj_at_16`` (a fraction), ``mean_tokens``, ``source``.
    """
    import pandas as pd

    path = Path(path) if path is not None else Path(__file__).parent / "data" / "original_results.csv"
    if not path.is_file():
        raise DatasetError(f"reference table not found: {path}")
    return pd.read_csv(path)
