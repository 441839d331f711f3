"""Do more samples per problem give GRPO an accuracy signal where smol rarely succeeds? One smol GRPO run with the
profile's recipe but `--generations` (default 8) trajectories per problem instead of 4, checked on validation problems
only (the nano generator's `train` split drawn with seed 1, minus training: never the held-out set).

The smol profile samples 4 trajectories per problem. On equations, counting and arithmetic series the untrained model
solves a few percent of its samples (`experiments/smol_reach/results/val_reach.json`), so almost every group of 4 scores 0 on
accuracy and GRPO learns nothing about them. With 8 samples a group more often holds a success. This run keeps every
other setting (LoRA, rewards, learning rate and its schedule, 96-token rollouts); each step costs about twice the
profile's, since it trains on twice the trajectories. Writes, under `experiments/smol_more_samples/results/`:
`train_summary.json` (the before/after check on the validation problems, greedy) and `train_metrics.csv`; then
`python -m experiments.smol_by_kind.smol_by_kind --trained runs/smol_more_samples/final
--out experiments/smol_more_samples/results` splits
the same check by kind.

    python -m experiments.smol_more_samples.smol_more_samples [--generations 8] [--steps 20] [--n 80]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from deepmath_lib.grpo import train
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir, validation_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=8, help="trajectories per problem (the profile: 4)")
    ap.add_argument("--prompts", type=int, default=2, help="problems per optimizer step (the profile: 2)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=80, help="validation problems of the before/after check")
    ap.add_argument("--output-dir", default=str(REPO_ROOT / "runs/smol_more_samples"))
    ap.add_argument("--results", default=str(results_dir("smol_more_samples")))
    a = ap.parse_args()
    if min(a.generations, a.prompts, a.steps, a.n) < 1 or a.generations < 2:
        ap.error("--generations must be at least 2 and --prompts, --steps, --n positive")
    base = get_profile("smol")
    val = validation_problems(base, a.n)
    with tempfile.TemporaryDirectory() as tmp:
        val_file = Path(tmp) / "validation.jsonl"
        val_file.write_text("".join(json.dumps(p) + "\n" for p in val))
        prof = base.with_overrides(
            num_generations=a.generations,
            prompts_per_step=a.prompts,
            train_steps=a.steps,
            temperature_steps=a.steps,
            save_steps=a.steps,
            heldout_data=str(val_file),  # the check runs on validation problems, never the held-out set
            heldout_problems=len(val),
        )
        summary = train(prof, output_dir=a.output_dir, write_summary=False)
    out = Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in summary.items() if k not in ("before", "after", "log_history", "model_dir")}
    keep["problems"] = (
        "validation: nano generator, train split, seed 1, minus training (never the held-out set)"
    )
    final = Path(a.output_dir).resolve() / "final"
    keep["model_dir"] = str(final.relative_to(REPO_ROOT) if final.is_relative_to(REPO_ROOT) else final)
    (out / "train_summary.json").write_text(json.dumps(keep, indent=1) + "\n")
    metrics = Path(a.output_dir) / "train_metrics.csv"
    if metrics.exists():
        (out / "train_metrics.csv").write_text(metrics.read_text())
    print(f"wrote {out / 'train_summary.json'}")


if __name__ == "__main__":
    main()
