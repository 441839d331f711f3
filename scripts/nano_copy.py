"""How well nano copies numbers: products of a 4-digit and a 2-digit factor ("What is 4821*37?"), the agent prompt.

Per trajectory: did it call the tool, did its snippet compute the right product (the operands copied from the
question), and did its boxed answer repeat the executor's output (the output copied into the answer). Eval sampling
(the profile's), `--samples` per problem. Prints one JSON line per model folder.

    python scripts/nano_copy.py deepmath_lib/weights/nano-base deepmath_lib/weights/nano-grpo
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from deepmath_lib.agent import run_agent
from deepmath_lib.backends import TransformersBackend
from deepmath_lib.models import load_model
from deepmath_lib.profiles import get_profile

OUTPUT = re.compile(r"```output\n(.*?)\n```", re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="nano model folders")
    ap.add_argument("--n", type=int, default=100, help="problems")
    ap.add_argument("--samples", type=int, default=4)
    a = ap.parse_args()
    if a.n < 1 or a.samples < 1:
        ap.error(f"--n and --samples must be positive, got {a.n} and {a.samples}")
    for path in a.models:
        if not Path(path).is_dir():
            ap.error(f"no model folder at {path}")
    prof = get_profile("nano")
    rng = random.Random(7)
    pairs = [(rng.randint(1000, 9999), rng.randint(11, 99)) for _ in range(a.n)]
    questions = [(x, y) for x, y in pairs for _ in range(a.samples)]
    for path in a.models:
        model, tok = load_model(prof, model_path=path, device="cpu")
        trajs = run_agent(
            TransformersBackend(model, tok, prof.concurrency),
            [f"What is {x}*{y}?" for x, y in questions],
            prof,
            sampling=prof.eval_sampling,
            seed=0,
            concurrency=prof.concurrency,
        )
        code = operands = copied = correct = 0
        for (x, y), t in zip(questions, trajs, strict=True):
            correct += t.answer == str(x * y)
            m = OUTPUT.search(t.text)
            if m:
                out = m.group(1).strip()
                code += 1
                operands += out == str(x * y)
                copied += t.answer == out
        n = len(trajs)
        print(
            json.dumps(
                {
                    "model": path,
                    "trajectories": n,
                    "correct": round(correct / n, 3),
                    "code": round(code / n, 3),
                    "snippet_right_of_code": round(operands / max(code, 1), 3),
                    "answer_copies_output_of_code": round(copied / max(code, 1), 3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
