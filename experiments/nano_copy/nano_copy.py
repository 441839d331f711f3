"""How well nano copies numbers: products of a 4-digit and a 2-digit factor ("What is 4821*37?"), the agent prompt.

Per trajectory: did it call the tool, did its snippet compute the right product (the operands copied from the
question), and did its boxed answer repeat the executor's output (the output copied into the answer). Eval sampling
(the profile's), `--samples` per problem.

Teacher-forced, on the same products: the trace up to `\\boxed{` and the output's first number token are given, and
the model's most likely next token is checked against the output's second token. Once with the true output, once
with a counterfactual one whose second token is replaced by a random one: a model that copies follows the output,
a model that computes the product itself still predicts the true token (`second_token_guesses_true`).

Prints one JSON line per model folder and writes them all to `--out` (default
`experiments/nano_copy/results/copy.json`, which its `block.py` turns into the nano page's paragraph on copying).

    python -m experiments.nano_copy.nano_copy deepmath_lib/weights/nano-base deepmath_lib/weights/nano-grpo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
from pathlib import Path

from deepmath_lib.agent import run_agent
from deepmath_lib.backends import TransformersBackend
from deepmath_lib.models import load_model
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir

OUTPUT = re.compile(r"```output\n(.*?)\n```", re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="nano model folders")
    ap.add_argument("--n", type=int, default=100, help="problems")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", default=str(results_dir("nano_copy") / "copy.json"))
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
    results = []
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
        # digits of the output ("error": not a number) -> [tool trajectories, boxes that copy the output]
        by_digits: dict[str, list[int]] = {}
        for (x, y), t in zip(questions, trajs, strict=True):
            correct += t.answer == str(x * y)
            m = OUTPUT.search(t.text)
            if m:
                out = m.group(1).strip()
                code += 1
                operands += out == str(x * y)
                copied += t.answer == out
                d = by_digits.setdefault(str(len(out)) if out.isdigit() else "error", [0, 0])
                d[0] += 1
                d[1] += t.answer == out
        n = len(trajs)
        res = {
            "model": Path(path).name,
            "trajectories": n,
            "correct": round(correct / n, 3),
            "code": round(code / n, 3),
            "snippet_right_of_code": round(operands / max(code, 1), 3),
            "answer_copies_output_of_code": round(copied / max(code, 1), 3),
            "copies_by_output_digits": dict(sorted(by_digits.items())),
            **teacher_forced(model, tok, prof, pairs),
        }
        print(json.dumps(res), flush=True)
        results.append(res)
    record = {
        "problems": f"{a.n} products of a 4-digit and a 2-digit number (seed 7)",
        "samples": a.samples,
        "sampling": dataclasses.asdict(prof.eval_sampling),
        "models": results,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {a.out}")


def teacher_forced(model, tok, prof, pairs: list[tuple[int, int]]) -> dict:
    """Second-token copy rates with the true output and with a counterfactual one (see the module docstring), over
    the pairs whose product is six digits (two three-digit number tokens)."""
    import torch

    from deepmath_lib.nano.build import _prompt_text
    from deepmath_lib.nano.problems import tool_trace

    rng = random.Random(11)
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    n = true_ok = cf_ok = cf_true = 0
    for x, y in pairs:
        product = x * y
        if product < 100_000:
            continue
        fake = product // 1000 * 1000 + rng.choice([v for v in range(100, 1000) if v != product % 1000])
        prompt = _prompt_text(f"What is {x}*{y}?", True, tok, prof)
        predicted = []
        for out in (product, fake):
            # the SFT data's tool trace, its snippet computing x*y, its output block and box showing `out`
            before, block, after = tool_trace(
                {"kind": "mul", "p": (x, y), "answer": out}, random.Random(0), prof
            )
            chunks = enc(str(out))
            ids = enc(prompt + before + block + after[: after.index("{") + 1]) + chunks[:1]
            with torch.no_grad():
                predicted.append((int(model(torch.tensor([ids])).logits[0, -1].argmax()), chunks[1]))
        (got, want), (got_cf, want_cf) = predicted
        n += 1
        true_ok += got == want
        cf_ok += got_cf == want_cf
        cf_true += got_cf == want
    return {
        "teacher_forced_n": n,
        "second_token_copied": round(true_ok / max(n, 1), 3),
        "second_token_copied_counterfactual": round(cf_ok / max(n, 1), 3),
        "second_token_guesses_true": round(cf_true / max(n, 1), 3),
    }


if __name__ == "__main__":
    main()
