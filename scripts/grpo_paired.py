"""GRPO's before/after check judged on its per-problem differences, written into an existing train_summary.json.

`deepmath train` stores the check's per-problem outcomes (`heldout_check.csv`) and the paired figures itself. This
script adds them for a run that has already happened, without retraining:

- from saved weights (nano): the check is run again as `train` runs it (the held-out problems, the eval sampling,
  the profile's seed and check batch), before = the base model, after = `--after` (default: the profile's released
  weights). It prints whether the rerun reproduces the stored accuracies and code-use rates.
- from evaluation samples (smol, `--from-samples heldout200`): when the check is the same greedy run as the
  evaluation's +Agent (before) and DeepMath (after) rows, their committed samples are the check's outcomes.

Every field of `train_summary.json` other than the paired ones (`accuracy_diff`, `accuracy_diff_ci`,
`accuracy_diff_p`, the same for `code_use` and `model_tokens`, `*_changed`, `paired_tests`, `paired_source`) is left
as it is.

    python scripts/grpo_paired.py --profile nano
    python scripts/grpo_paired.py --profile smol --from-samples heldout200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepmath_lib.grpo import add_paired_fields, outcomes_from_samples, rerun_check
from deepmath_lib.models import split_weights
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.profiles import get_profile
from deepmath_lib.results import profile_results_dir, samples_path


def _where(path: str) -> str:
    """A weights folder relative to the repository when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="nano")
    ap.add_argument(
        "--from-samples",
        metavar="DATASET",
        default=None,
        help="take the outcomes from this dataset's agent (before) and deepmath (after) samples",
    )
    ap.add_argument("--before", default=None, help="weights before GRPO (default: the base model)")
    ap.add_argument(
        "--after", default=None, help="weights after GRPO (default: the profile's released weights)"
    )
    ap.add_argument("--results-root", default=None, help="default data/results")
    args = ap.parse_args()

    stored = json.loads(
        (profile_results_dir(args.profile, args.results_root) / "train_summary.json").read_text()
    )
    if args.from_samples:
        before = outcomes_from_samples(args.profile, args.from_samples, "agent", args.results_root)
        after = outcomes_from_samples(args.profile, args.from_samples, "deepmath", args.results_root)
        files = [
            samples_path(args.profile, args.from_samples, c, args.results_root).name
            for c in ("agent", "deepmath")
        ]
        source = (
            f"`python scripts/grpo_paired.py --profile {args.profile} --from-samples {args.from_samples}` took "
            f"them from the evaluation samples {files[0]} (before) and {files[1]} (after)"
        )
    else:
        b, a = rerun_check(args.profile, args.before, args.after)
        before, after = b["outcomes"], a["outcomes"]
        prof = get_profile(args.profile)
        names = [
            _where(split_weights(prof, w)[0]) for w in (args.before, args.after or prof.released_weights)
        ]
        source = (
            f"`python scripts/grpo_paired.py --profile {args.profile}` reran the check from {names[0]} (before) "
            f"and {names[1]} (after)"
        )
    n = len(before)
    acc = (sum(o["correct"] for o in before) / n, sum(o["correct"] for o in after) / n)
    code = (sum(o["code_use"] for o in before) / n, sum(o["code_use"] for o in after) / n)
    stored_acc = (stored["accuracy_before"], stored["accuracy_after"])
    stored_code = (stored["code_use_rate_before"], stored["code_use_rate_after"])
    same = all(round(x, 4) == y for x, y in zip(acc + code, stored_acc + stored_code, strict=True))
    print(
        f"accuracy {acc[0]:.1%} -> {acc[1]:.1%} (stored {stored_acc[0]:.1%} -> {stored_acc[1]:.1%}), code use "
        f"{code[0]:.1%} -> {code[1]:.1%} (stored {stored_code[0]:.1%} -> {stored_code[1]:.1%}): "
        + ("reproduced" if same else "NOT the stored figures")
    )
    if not same:
        print(
            "error: the outcomes do not reproduce the stored check; train_summary.json left as it is",
            file=sys.stderr,
        )
        return 1
    summary = add_paired_fields(args.profile, before, after, source, args.results_root)
    keys = [k for k in summary if k.endswith(("_diff", "_diff_ci", "_diff_p", "_changed"))]
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
