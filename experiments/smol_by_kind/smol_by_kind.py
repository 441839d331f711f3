"""smol before and after GRPO, per problem kind, on validation problems (never the held-out set).

Validation problems: the nano generator's `train` split drawn with seed 1, minus every problem of the training set,
so they are disjoint from both training and the held-out set. Greedy, the profile's agent settings, as the held-out
check. Writes `experiments/smol_by_kind/results/val_by_kind.json` (counts per kind: problems, code used, correct; finish reasons)
and the trajectories beside it (`val_by_kind_trajectories.jsonl`).

    python -m experiments.smol_by_kind.smol_by_kind [--trained PATH] [--n 80] [--also CHECKPOINT ...]

`--trained` defaults to smol's trained weights by the library's rule (`models.trained_model_path`): a local GRPO
run's `runs/smol/grpo/final`, else the adapter shipped in the package.

`--also` adds intermediate checkpoints of the same run (e.g. runs/smol/grpo/checkpoint-18), each under its
folder name: picking one of them on these problems is model selection on validation, never on the held-out set.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from deepmath_lib.backends import TransformersBackend
from deepmath_lib.fingerprints import engine_fingerprint
from deepmath_lib.grading import is_equivalent
from deepmath_lib.grpo import agent_check
from deepmath_lib.models import load_model, trained_model_path
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir, validation_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trained", default=trained_model_path(get_profile("smol")))
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--out", default=str(results_dir("smol_by_kind")))
    ap.add_argument("--also", nargs="*", default=[], help="intermediate checkpoints to check as well")
    a = ap.parse_args()
    if a.n < 1:
        ap.error(f"--n must be positive, got {a.n}")
    for path in [a.trained, *a.also]:
        if not Path(path).is_dir():
            ap.error(f"no trained model folder at {path} (run `make demo PROFILE=smol` first)")
    prof = get_profile("smol")
    val = validation_problems(prof, a.n)
    summary = {
        "n": len(val),
        "problems": "nano generator, train split, seed 1, minus training",
        "engine": engine_fingerprint(prof),
    }
    rows = []
    models = [("before", None), ("after", a.trained)] + [(Path(c).name, c) for c in a.also]
    for when, path in models:
        model, tok = load_model(prof, model_path=path, device="cpu")
        res = agent_check(
            TransformersBackend(model, tok, prof.check_batch), prof, val, concurrency=prof.check_batch
        )
        kinds = collections.defaultdict(lambda: {"n": 0, "code": 0, "correct": 0})
        for p, t in zip(val, res["trajectories"], strict=True):
            ok = bool(is_equivalent(str(p["answer"]), t.answer))
            k = kinds[p["kind"]]
            k["n"] += 1
            k["code"] += t.n_calls_ok > 0
            k["correct"] += ok
            rows.append(
                {
                    "when": when,
                    **p,
                    "pred": t.answer,
                    "correct": ok,
                    "finish": t.finish_reason,
                    "text": t.text,
                }
            )
        summary[when] = {
            "accuracy": res["accuracy"],
            "accuracy_ci": res["accuracy_ci"],
            "code_use_rate": res["code_use_rate"],
            "by_kind": dict(sorted(kinds.items())),
            "finish": dict(collections.Counter(t.finish_reason for t in res["trajectories"])),
        }
        print(when, json.dumps(summary[when]), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "val_by_kind.json").write_text(json.dumps(summary, indent=1) + "\n")
    with (out / "val_by_kind_trajectories.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"wrote {out / 'val_by_kind.json'}")


if __name__ == "__main__":
    main()
