"""What several experiments share: the validation problems they measure on."""

from __future__ import annotations

from pathlib import Path

from deepmath_lib.grpo import train_problems
from deepmath_lib.nano.problems import generate_problems
from deepmath_lib.profiles import Profile

EXPERIMENTS = Path(__file__).resolve().parent


def validation_problems(profile: Profile, n: int) -> list[dict]:
    """`n` problems for diagnosis and model selection, never the held-out set: the nano generator's `train` split
    drawn with seed 1, minus every training problem of `profile` (so disjoint from training and held-out alike)."""
    seen = {p["problem"] for p in train_problems(profile)}
    return [p for p in generate_problems(n * 5, split="train", seed=1) if p["problem"] not in seen][:n]


def results_dir(name: str) -> Path:
    """`experiments/<name>/results/`, where that experiment stores what it measured."""
    return EXPERIMENTS / name / "results"
