"""Can a better prompt open the kinds smol never solves? Untrained smol on validation problems (never the held-out set),
per problem kind, under three few-shot prompts:

- `shipped`: the smol profile's prompt (3 solved examples: a product, a modular power, a counting sum);
- `shipped+1`: the same with the fourth general example (a linear equation solved with sympy);
- `kinds`: five short examples written in the nano generator's own problem styles (a product, `a^b mod m`, "how
  many n <= N are divisible by p or q", a linear equation, an arithmetic series), each solved by one line of code;
- `verbatim`: the same five, with code that copies the problem's numbers in the order they appear (`range(1, 50 + 1)`,
  `solve(5*x + 12 - 47, x)` with sympy, `range(3, 39 + 1, 7 - 3)`), so no number has to be worked out first;
- `search`: as `verbatim`, but the equation solved by trying every x (`[x for x in range(-1000, 1000) if ...]`);
- `named`: the numbers first bound to names in problem order (`a, b, c = 5, 12, 47`), then one fixed formula per kind.

Each prompt is measured greedy (the held-out check's sampling) and, with `--samples`, sampled as GRPO samples it
(T 1.0, top_p 0.8, top_k 50): a kind that no sample solves gives GRPO no accuracy signal there. Writes
`experiments/smol_prompt_probe/results/prompt_probe.json`.

    python -m experiments.smol_prompt_probe.smol_prompt_probe [--n 80] [--samples 4] [--sampled-prompts kinds]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import time
from pathlib import Path

from deepmath_lib import prompts
from deepmath_lib.agent import run_agent
from deepmath_lib.backends import TransformersBackend
from deepmath_lib.fingerprints import engine_fingerprint
from deepmath_lib.grading import is_equivalent
from deepmath_lib.models import load_model
from deepmath_lib.profiles import get_profile
from deepmath_lib.sandbox import Sandbox
from experiments.common import results_dir, validation_problems

E = prompts.Example


def shot(problem: str, code: str, output: str, answer: str) -> prompts.Example:
    """A solved example of one snippet: its code, what it prints, the boxed answer."""
    return E(problem, ((code, output),), answer)


COUNT, LINEAR, SERIES = (
    "How many n<=50 are divisible by 4 or 6?",
    "Solve 5x + 12 = 47.",
    "Find 3+7+11+...+39.",
)
KINDS = (
    shot("What is 248*365?", "print(248*365)", "90520", "90520"),
    shot("What is 7^222 mod 1000?", "print(pow(7, 222, 1000))", "49", "49"),
    shot(COUNT, "print(len([n for n in range(1, 51) if n % 4 == 0 or n % 6 == 0]))", "16", "16"),
    shot(LINEAR, "print((47 - 12) / 5)", "7.0", "7"),
    shot(SERIES, "print(sum(range(3, 39 + 1, 4)))", "210", "210"),
)
VERBATIM = KINDS[:2] + (
    shot(COUNT, "print(len([n for n in range(1, 50 + 1) if n % 4 == 0 or n % 6 == 0]))", "16", "16"),
    shot(
        LINEAR,
        "from sympy import symbols, solve\nx = symbols('x')\nprint(solve(5*x + 12 - 47, x))",
        "[7]",
        "7",
    ),
    shot(SERIES, "print(sum(range(3, 39 + 1, 7 - 3)))", "210", "210"),
)
SEARCH = VERBATIM[:3] + (
    shot(LINEAR, "print([x for x in range(-1000, 1000) if 5*x + 12 == 47])", "[7]", "7"),
    VERBATIM[4],
)
NAMED = KINDS[:2] + (
    shot(
        COUNT,
        "N, a, b = 50, 4, 6\nprint(len([n for n in range(1, N + 1) if n % a == 0 or n % b == 0]))",
        "16",
        "16",
    ),
    shot(LINEAR, "a, b, c = 5, 12, 47\nprint((c - b) / a)", "7.0", "7"),
    shot(
        SERIES,
        "first, second, last = 3, 7, 39\nprint(sum(range(first, last + 1, second - first)))",
        "210",
        "210",
    ),
)
VARIANTS = {
    "shipped": (prompts.EXAMPLES, 3),
    "shipped+1": (prompts.EXAMPLES, 4),
    "kinds": (KINDS, len(KINDS)),
    "verbatim": (VERBATIM, len(VERBATIM)),
    "search": (SEARCH, len(SEARCH)),
    "named": (NAMED, len(NAMED)),
}


def check_outputs() -> None:
    """Every example's output is what our sandbox prints (as tests/test_prompts.py checks the shipped ones)."""
    for name, (example_set, _) in VARIANTS.items():
        for ex in example_set:
            with Sandbox(timeout=20) as sb:
                for code, expected in (s for s in ex.steps if isinstance(s, tuple)):
                    got = sb.run(code)
                    if got.error is not None or got.stdout.strip() != expected:
                        raise SystemExit(
                            f"{name}: {ex.problem!r} prints {got.stdout!r} ({got.error}), not {expected!r}"
                        )


@contextlib.contextmanager
def examples(example_set):
    saved = prompts.EXAMPLES
    prompts.EXAMPLES = example_set
    try:
        yield
    finally:
        prompts.EXAMPLES = saved


def measure(backend, prof, val, sampling, samples: int) -> dict:
    problems = [p for p in val for _ in range(samples)]
    trajs = run_agent(
        backend,
        [p["problem"] for p in problems],
        prof,
        sampling=sampling,
        seed=0,
        concurrency=prof.concurrency,
    )
    failed = [t for t in trajs if t.finish_reason == "error"]
    if failed:
        raise SystemExit(f"{len(failed)} generations failed; the first: {failed[0].error}")
    kinds = collections.defaultdict(lambda: {"samples": 0, "code": 0, "correct": 0})
    for p, t in zip(problems, trajs, strict=True):
        k = kinds[p["kind"]]
        k["samples"] += 1
        k["code"] += t.n_calls_ok > 0
        k["correct"] += bool(is_equivalent(str(p["answer"]), t.answer))
    return {
        "correct": sum(k["correct"] for k in kinds.values()),
        "samples": len(trajs),
        "by_kind": dict(kinds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80, help="validation problems")
    ap.add_argument(
        "--samples", type=int, default=4, help="samples per problem in the sampled runs (0: none)"
    )
    ap.add_argument("--sampled-prompts", nargs="*", default=["kinds"], choices=sorted(VARIANTS))
    ap.add_argument("--out", default=str(results_dir("smol_prompt_probe") / "prompt_probe.json"))
    a = ap.parse_args()
    if a.n < 1 or a.samples < 0:
        ap.error(f"--n must be positive and --samples not negative, got {a.n} and {a.samples}")
    check_outputs()
    base = get_profile("smol")
    val = validation_problems(base, a.n)
    model, tok = load_model(base, device="cpu")
    backend = TransformersBackend(model, tok, base.concurrency)
    sampled = dataclasses.replace(base.train_sampling, temperature=1.0)
    out = {
        "model": "smol, untrained (the GRPO starting point)",
        "problems": "nano generator, train split, seed 1, minus training (validation)",
        "n": len(val),
        "greedy": dataclasses.asdict(base.eval_sampling),
        "sampled": {**dataclasses.asdict(sampled), "samples_per_problem": a.samples},
        "engine": engine_fingerprint(base),
        "prompts": {},
    }
    t0 = time.time()
    for name, (example_set, shots) in VARIANTS.items():
        prof = get_profile("smol", n_shots=shots)
        with examples(example_set):
            res = {"shots": [ex.problem for ex in example_set[:shots]]}
            res["greedy"] = measure(backend, prof, val, prof.eval_sampling, 1)
            if a.samples and name in a.sampled_prompts:
                res["sampled"] = measure(backend, prof, val, sampled, a.samples)
        out["prompts"][name] = res
        print(name, {k: v["correct"] for k, v in res.items() if isinstance(v, dict)}, flush=True)
    backend.close()
    out["seconds"] = round(time.time() - t0, 1)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
