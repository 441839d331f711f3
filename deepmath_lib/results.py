"""A resumable, crash-safe result store and atomic summary writers.

``ResultStore(path)`` keeps one JSON line per ``(dataset, config, problem_id, sample)``. Each record is written with a
single ``write`` call, flushed and fsynced as soon as it is appended, so a run killed at any moment loses at most the
record being written. Reading ignores a torn last line (a writer killed mid-line); the next ``append`` first truncates
the file back to the last complete line. Duplicate keys keep the first record, and ``append`` refuses a key that is
already stored, so a rerun that skips ``done_keys()`` ends with every key exactly once.

Sample record keys (shared with the evaluator and the figures): ``dataset, config, problem_id, sample, problem, gold,
pred, correct (bool|None), finish_reason (answer|eos|budget|calls|context|error), n_calls, n_calls_ok, model_tokens,
total_tokens, text`` (the full trace with executor output blocks; texts over ``max_text_chars`` are cut in the middle).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .paths import results_root as default_root

try:  # POSIX advisory locks between processes; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

KEY_FIELDS: tuple[str, ...] = ("dataset", "config", "problem_id", "sample")
RECORD_FIELDS: tuple[str, ...] = (
    "dataset",
    "config",
    "problem_id",
    "sample",
    "problem",
    "gold",
    "pred",
    "correct",
    "finish_reason",
    "n_calls",
    "n_calls_ok",
    "model_tokens",
    "total_tokens",
    "text",
)
MAX_TEXT_CHARS = 20_000
EVAL_SUMMARY_COLUMNS: tuple[str, ...] = (
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
)
# Per-step GRPO log (`train_metrics.csv`), written by grpo.py and drawn by plots.py.
TRAIN_METRICS_COLUMNS: tuple[str, ...] = (
    "reward",
    "reward_accuracy",
    "reward_code",
    "mean_model_tokens",
    "temperature",
)
# ... and where each step's wall time went (seconds): the agent-loop rollouts, the rewards, the rest (forward,
# backward and optimizer step)
STEP_TIME_COLUMNS: tuple[str, ...] = ("step_s", "rollout_s", "reward_s", "optimizer_s")


def key(record: dict) -> tuple:
    """The identity of a sample record: ``(dataset, config, problem_id, sample)`` (problem_id as str, sample as int)."""
    missing = [f for f in KEY_FIELDS if f not in record or record[f] is None]
    if missing:
        raise KeyError(f"record lacks key field(s) {missing}: {sorted(record)}")
    return (str(record["dataset"]), str(record["config"]), str(record["problem_id"]), int(record["sample"]))


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python values, tuples/sets -> lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return _clean(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def truncate_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Cut a text over ``limit`` characters in the middle, keeping its start and its end (where the answer is)."""
    if text is None or len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} characters cut by the result store ...]\n"
    head = (limit - len(marker)) // 2
    tail = limit - len(marker) - head
    return text[:head] + marker + text[len(text) - tail :]


def _scan(path: Path) -> tuple[list[dict], int, int]:
    """Parse a JSONL file: (records of complete valid lines, byte offset after the last complete line, bad lines)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    end = data.rfind(b"\n") + 1  # 0 when there is no complete line
    records: list[dict] = []
    bad = 0
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, end, bad


class ResultStore:
    """Append-only JSONL store of sample records, safe to kill and resume.

    Args:
        path: the JSONL file (created with its parent folders on the first append).
        max_text_chars: longer ``text`` fields are cut in the middle (None: keep everything).
    """

    def __init__(self, path: str | os.PathLike, max_text_chars: int | None = MAX_TEXT_CHARS) -> None:
        self.path = Path(path)
        self.max_text_chars = max_text_chars
        self._lock = threading.Lock()
        self._keys: set[tuple] | None = None
        self._size = -1  # file size after our last write; another writer changes it -> reload the keys

    key = staticmethod(key)

    def records(self) -> list[dict]:
        """All stored records in file order; a torn last line is ignored and duplicate keys keep the first."""
        raw, _, bad = _scan(self.path)
        if bad:
            warnings.warn(f"{self.path}: ignored {bad} unreadable line(s)", RuntimeWarning, stacklevel=2)
        seen: set[tuple] = set()
        out = []
        for rec in raw:
            try:
                k = key(rec)
            except (KeyError, TypeError, ValueError):
                continue
            if k not in seen:
                seen.add(k)
                out.append(rec)
        return out

    def done_keys(self) -> set[tuple]:
        """The keys of every stored record (what a rerun should skip)."""
        return {key(r) for r in self.records()}

    def __len__(self) -> int:
        return len(self.records())

    def __contains__(self, record_or_key: dict | tuple) -> bool:
        k = key(record_or_key) if isinstance(record_or_key, dict) else tuple(record_or_key)
        return k in self.done_keys()

    def append(self, record: dict) -> bool:
        """Write one record durably (one ``write``, flush, fsync). Returns False (writing nothing) when its key is
        already stored. A torn last line left by a killed writer is truncated away first."""
        k = key(record)
        rec = _clean(dict(record))
        rec["problem_id"], rec["sample"] = k[2], k[3]
        if self.max_text_chars is not None and isinstance(rec.get("text"), str):
            if len(rec["text"]) > self.max_text_chars:
                rec["text_chars"] = len(rec["text"])
                rec["text"] = truncate_text(rec["text"], self.max_text_chars)
        line = (json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._repair(fd)
                if self._keys is None or os.fstat(fd).st_size != self._size:
                    self._keys = {key(r) for r in self.records()}
                    self._size = os.fstat(fd).st_size
                if k in self._keys:
                    return False
                written = 0
                while written < len(line):  # one write in practice; loop only on a short write
                    written += os.write(fd, line[written:])
                os.fsync(fd)
                self._keys.add(k)
                self._size = os.fstat(fd).st_size
                return True
            finally:
                os.close(fd)  # also releases the flock

    def extend(self, records: Iterable[dict]) -> int:
        """Append several records; returns how many were new."""
        return sum(self.append(r) for r in records)

    def _repair(self, fd: int) -> None:
        """Truncate a torn last line (no trailing newline) back to the end of the last complete line."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        pos = size
        chunk = 65536
        while pos > 0:
            start = max(0, pos - chunk)
            block = os.pread(fd, pos - start, start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                os.ftruncate(fd, start + idx + 1)
                break
            pos = start
        else:
            os.ftruncate(fd, 0)
        os.fsync(fd)
        self._keys = None  # the torn record was never counted, but re-read to be safe


def read_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Records from a JSONL file, a folder of ``*.jsonl`` files (sorted by name) or a list of files."""
    if isinstance(paths, str | os.PathLike):
        p = Path(paths)
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    else:
        files = [Path(p) for p in paths]
    out: list[dict] = []
    for f in files:
        out.extend(ResultStore(f).records())
    return out


# ----------------------------------------------------------------------------------------------- summaries


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(_clean(obj), indent=2, ensure_ascii=False) + "\n")


def write_summary(df: Any, path: str | os.PathLike) -> Path:
    """Write a DataFrame as CSV atomically (no index); returns the path."""
    return atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def profile_results_dir(profile: str, results_root: str | os.PathLike | None = None) -> Path:
    """``<results_root>/<profile>``, without creating it; the default root is ``paths.results_root()``
    (``data/results`` in a checkout, ``./runs/results`` from an installed wheel)."""

    root = Path(results_root) if results_root is not None else default_root()
    return root / profile


def eval_summary_path(profile: str, results_root: str | os.PathLike | None = None) -> Path:
    """Where ``eval_summary.csv`` lives for a profile."""
    return profile_results_dir(profile, results_root) / "eval_summary.csv"


def samples_path(
    profile: str, dataset: str, config: str, results_root: str | os.PathLike | None = None
) -> Path:
    """The per-sample JSONL for one dataset and configuration: ``<results>/<profile>/samples/<dataset>__<config>.jsonl``
    (a local dataset path is reduced to its file stem)."""
    safe = Path(str(dataset)).stem if ("/" in str(dataset) or "." in str(dataset)) else str(dataset)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in safe)
    return profile_results_dir(profile, results_root) / "samples" / f"{safe}__{config}.jsonl"


def write_eval_summary(df: Any, profile: str, results_root: str | os.PathLike | None = None) -> Path:
    """Write ``eval_summary.csv`` for a profile atomically; the contract columns come first, extras after."""
    missing = [c for c in EVAL_SUMMARY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"eval summary lacks column(s) {missing}")
    extra = [c for c in df.columns if c not in EVAL_SUMMARY_COLUMNS]
    return write_summary(df[list(EVAL_SUMMARY_COLUMNS) + extra], eval_summary_path(profile, results_root))
