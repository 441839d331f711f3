"""A maintenance tool: regrade stored evaluation samples in place with the current grader."""

from __future__ import annotations

import json
from pathlib import Path

from .grading import gold_is_parseable, is_equivalent
from .profiles import DEFAULT_PROFILE, get_profile
from .results import atomic_write_text, profile_results_dir
from .trace import prose_answer


def regrade_samples(results_root: str | Path | None = None, profile: str = DEFAULT_PROFILE) -> dict[str, int]:
    """Regrade the stored eval samples of a profile in place with the current grader.

    For every ``<results_root>/<profile>/samples/*.jsonl`` row: ``pred`` is re-extracted from the model's own prose
    in ``text`` (code and executor output removed, as the agent does), ``correct`` is recomputed (None when the gold
    does not parse), and ``finish_reason`` moves between "answer" and "eos" to match. Files are rewritten
    atomically; the ``.meta.json`` fingerprints stay as they are (grading is not part of them). Summaries are not
    touched: rebuild them from the samples afterwards. Returns counts: files, rows, pred_changed,
    correct_changed."""
    prof = get_profile(profile)
    counts = {"files": 0, "rows": 0, "pred_changed": 0, "correct_changed": 0}
    for path in sorted((profile_results_dir(profile, results_root) / "samples").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for row in rows:
            pred = prose_answer(row.get("text") or "", prof)
            gold = str(row["gold"])
            correct = is_equivalent(gold, pred) if gold_is_parseable(gold) else None
            counts["pred_changed"] += pred != row.get("pred")
            counts["correct_changed"] += correct != row.get("correct")
            row["pred"], row["correct"] = pred, correct
            if row.get("finish_reason") in ("eos", "answer"):
                row["finish_reason"] = "answer" if pred is not None else "eos"
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        counts["files"] += 1
        counts["rows"] += len(rows)
    return counts
