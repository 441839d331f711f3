"""What GRPO can reach on smol: per-kind success of the untrained model when it samples, as during training.

GRPO only re-weights what the policy already samples: a problem kind that the untrained model never solves at the
training temperature gives every completion of its group the same accuracy reward, so no accuracy signal. This
script samples the untrained smol agent `--samples` times per validation problem (the same problems as
`experiments/smol_by_kind`: nano generator, train split, seed 1, minus training; never the held-out set) at the training
sampling with temperature `--temperature` (the middle of the 1.2 -> 0.7 schedule by default), and counts per kind how
many samples used code and how many were correct. Writes `experiments/smol_reach/results/val_reach.json`.

    python -m experiments.smol_reach.smol_reach [--n 80] [--samples 4] [--temperature 1.0]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time
from pathlib import Path

from deepmath_lib.agent import run_agent
from deepmath_lib.backends import TransformersBackend
from deepmath_lib.fingerprints import engine_fingerprint
from deepmath_lib.grading import is_equivalent
from deepmath_lib.models import load_model
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir, validation_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80, help="validation problems")
    ap.add_argument("--samples", type=int, default=4, help="samples per problem")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--out", default=str(results_dir("smol_reach") / "val_reach.json"))
    a = ap.parse_args()
    if a.n < 1 or a.samples < 1:
        ap.error(f"--n and --samples must be positive, got {a.n} and {a.samples}")
    if not a.temperature > 0:
        ap.error(f"--temperature must be above 0 (this measures sampling), got {a.temperature}")
    prof = get_profile("smol")
    val = validation_problems(prof, a.n)
    sampling = dataclasses.replace(prof.train_sampling, temperature=a.temperature)
    model, tok = load_model(prof, device="cpu")
    problems = [p for p in val for _ in range(a.samples)]
    t0 = time.time()
    trajs = run_agent(
        TransformersBackend(model, tok, prof.concurrency),
        [p["problem"] for p in problems],
        prof,
        sampling=sampling,
        seed=0,
        concurrency=prof.concurrency,
        progress=True,
    )
    failed = [t for t in trajs if t.finish_reason == "error"]
    if failed:
        raise SystemExit(f"{len(failed)} generations failed; the first: {failed[0].error}")
    kinds = collections.defaultdict(
        lambda: {"problems": 0, "samples": 0, "code": 0, "correct": 0, "solved": 0}
    )
    per_problem = collections.defaultdict(int)
    for i, (p, t) in enumerate(zip(problems, trajs, strict=True)):
        ok = bool(is_equivalent(str(p["answer"]), t.answer))
        k = kinds[p["kind"]]
        k["samples"] += 1
        k["code"] += t.n_calls_ok > 0
        k["correct"] += ok
        per_problem[i // a.samples] += ok
    for j, p in enumerate(val):
        kinds[p["kind"]]["problems"] += 1
        kinds[p["kind"]]["solved"] += per_problem[j] > 0  # solved by at least one sample (pass@samples)
    out = {
        "model": "smol, untrained (the GRPO starting point)",
        "problems": "nano generator, train split, seed 1, minus training",
        "n": len(val),
        "samples": a.samples,
        "sampling": dataclasses.asdict(sampling),
        "engine": engine_fingerprint(prof),
        "seconds": round(time.time() - t0, 1),
        "by_kind": dict(sorted(kinds.items())),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    for kind, k in out["by_kind"].items():
        print(
            f"{kind:>7}: {k['correct']}/{k['samples']} samples correct, {k['solved']}/{k['problems']} problems solved"
        )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
