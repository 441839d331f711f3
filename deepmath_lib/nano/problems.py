"""Synthetic nano problems and their worked solutions, the material of the nano build's SFT data.

- `generate_problems`: problems where computing helps (products, sums, modular powers, sums of sequences,
  counting, linear equations), exact integer answers, disjoint train / heldout / eval splits.
- `tool_trace` / `hand_trace`: solutions in the nano profile's format -- a short trace that calls Python
  (`<tool_call>` ... `</tool_call>`, the executor's output block, then `\\boxed{}`) and a longer one that works the
  computation out by hand.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from ..profiles import get_profile
from .recipe import RECIPE

KINDS: tuple[str, ...] = ("mul", "add", "modpow", "sumsq", "arith", "count", "linear")
SPLITS: tuple[str, ...] = ("train", "heldout", "eval")


def _split_of(text: str) -> str:
    """The split a problem text belongs to, by hashing it: 10% eval, 10% heldout, 80% train."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "eval" if h == 0 else "heldout" if h == 1 else "train"


def _make_problem(kind: str, rng: random.Random) -> dict[str, Any]:
    """One problem of a kind: text, exact answer and the parameters the traces need."""
    if kind == "mul":
        digits = rng.randint(2, RECIPE["problems"]["mul_max_digits"])
        a, b = rng.randint(10 ** (digits - 1) + 1, 10**digits - 1), rng.randint(11, 99)
        return {"problem": f"What is {a}*{b}?", "answer": a * b, "p": (a, b)}
    if kind == "add":
        a, b, c = (rng.randint(11, 99) for _ in range(3))
        return {"problem": f"What is {a}+{b}+{c}?", "answer": a + b + c, "p": (a, b, c)}
    if kind == "modpow":
        a, b, m = rng.randint(2, 30), rng.randint(10, 64), rng.randint(7, 99)
        return {"problem": f"What is {a}^{b} mod {m}?", "answer": pow(a, b, m), "p": (a, b, m)}
    if kind == "sumsq":
        n = rng.randint(4, 13)
        return {"problem": f"Find 1^2+2^2+...+{n}^2.", "answer": n * (n + 1) * (2 * n + 1) // 6, "p": (n,)}
    if kind == "arith":
        a, d, n = rng.randint(1, 20), rng.randint(2, 5), rng.randint(5, 15)
        last = a + (n - 1) * d
        return {
            "problem": f"Find {a}+{a + d}+{a + 2 * d}+...+{last}.",
            "answer": n * (a + last) // 2,
            "p": (a, d, n, last),
        }
    if kind == "count":
        a = rng.randint(2, 13)
        b = rng.choice([k for k in range(2, 14) if k != a and k % a and a % k])
        big_n = rng.randint(30, 99)
        lcm = a * b // math.gcd(a, b)
        ans = big_n // a + big_n // b - big_n // lcm
        return {
            "problem": f"How many n<={big_n} are divisible by {a} or {b}?",
            "answer": ans,
            "p": (big_n, a, b, lcm),
        }
    if kind == "linear":
        a, x, b = rng.randint(2, 9), rng.randint(2, 30), rng.randint(1, 60)
        c = a * x + b
        return {"problem": f"Solve {a}x + {b} = {c}.", "answer": x, "p": (a, b, c)}
    raise ValueError(f"unknown kind {kind!r}")


def _problem_stream(split: str, seed: int):
    """Endless deterministic stream of (kind, raw problem) dicts of one split, no repeated texts."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    rng = random.Random(f"nano-problems:{seed}:{split}")
    seen: set[str] = set()
    while True:
        kind = rng.choice(KINDS)
        raw = _make_problem(kind, rng)
        text = raw["problem"]
        if text in seen or _split_of(text) != split:
            continue
        seen.add(text)
        raw["kind"] = kind
        yield raw


def generate_problems(n: int, split: str = "train", seed: int = 0) -> list[dict]:
    """`n` synthetic problems of a split ("train", "heldout", "eval"): dicts `id, problem, answer (str), kind`.

    Deterministic; the splits are disjoint (a problem's split is a hash of its text); a smaller `n` gives a
    prefix of a larger one."""
    rows = []
    for i, raw in enumerate(_problem_stream(split, seed)):
        if i >= n:
            break
        rows.append(
            {
                "id": f"nano-{split}-{i}",
                "problem": raw["problem"],
                "answer": str(raw["answer"]),
                "kind": raw["kind"],
            }
        )
    return rows


def _raw_problems(n: int, split: str, seed: int) -> list[dict]:
    out = []
    for i, raw in enumerate(_problem_stream(split, seed)):
        if i >= n:
            break
        out.append(raw)
    return out


# --------------------------------------------------------------------------------------------- traces


def tool_snippet(raw: dict, rng: random.Random) -> str:
    """A short Python snippet that prints the problem's answer (one of a few variants per kind)."""

    kind, p = raw["kind"], raw["p"]
    if kind == "mul":
        a, b = p
        options = [f"print({a}*{b})", f"print({a} * {b})", f"x = {a}*{b}\nprint(x)"]
    elif kind == "add":
        a, b, c = p
        options = [f"print({a}+{b}+{c})", f"print({a} + {b} + {c})", f"print(sum([{a}, {b}, {c}]))"]
    elif kind == "modpow":
        a, b, m = p
        options = [f"print(pow({a}, {b}, {m}))", f"print(pow({a},{b},{m}))", f"print({a}**{b} % {m})"]
    elif kind == "sumsq":
        (n,) = p
        options = [
            f"print(sum(i*i for i in range(1, {n} + 1)))",
            f"print(sum(i**2 for i in range(1, {n} + 1)))",
        ]
    elif kind == "arith":
        a, d, n, last = p
        options = [f"print(sum(range({a}, {last} + 1, {d})))", f"print(sum({a} + {d}*k for k in range({n})))"]
    elif kind == "count":
        big_n, a, b, _ = p
        options = [
            f"print(len([n for n in range(1, {big_n} + 1) if n % {a} == 0 or n % {b} == 0]))",
            f"print(sum(1 for n in range(1, {big_n} + 1) if n%{a}==0 or n%{b}==0))",
        ]
    elif kind == "linear":
        a, b, c = p
        options = [f"print(({c} - {b}) // {a})", f"x = ({c}-{b})//{a}\nprint(x)"]
    else:  # pragma: no cover - kinds are closed
        raise ValueError(kind)
    # One snippet form per kind (the first): with whole-number tokens the operands then sit at a fixed offset
    # from where the code needs them, so a tiny model learns to copy them within its few-minute build.
    return options[0] if RECIPE["data"].get("fixed_forms", True) else rng.choice(options)


def _modpow_hand(a: int, b: int, m: int) -> str:
    squares = [a % m]
    while (1 << len(squares)) <= b:
        squares.append(squares[-1] * squares[-1] % m)
    bits = [k for k in range(len(squares)) if b >> k & 1]
    steps, acc = [], None
    for k in reversed(bits):
        v = squares[k]
        if acc is None:
            acc = v
            continue
        steps.append(f"{acc}*{v}={acc * v}={acc * v % m}")
        acc = acc * v % m
    parts = "+".join(str(1 << k) for k in reversed(bits))
    text = f"Squares mod {m}: {', '.join(map(str, squares))}. {b}={parts}."
    if steps:
        text += " " + ", ".join(steps) + "."
    return text


def hand_work(raw: dict) -> str:
    """The visible by-hand working of a problem (correct arithmetic), without the final box."""
    kind, p = raw["kind"], raw["p"]
    if kind == "mul":
        a, b = p
        digits = str(b)
        terms = [int(ch) * 10 ** (len(digits) - 1 - i) for i, ch in enumerate(digits) if ch != "0"]
        if len(terms) == 1:
            return f"{a}*{b} = {a * b}."
        return (
            f"{a}*{b} = "
            + " + ".join(f"{a}*{t}" for t in terms)
            + " = "
            + " + ".join(str(a * t) for t in terms)
            + f" = {a * b}."
        )
    if kind == "add":
        a, b, c = p
        return f"{a}+{b} = {a + b}, {a + b}+{c} = {a + b + c}."
    if kind == "modpow":
        return _modpow_hand(*p)
    if kind == "sumsq":
        (n,) = p
        prod = n * (n + 1) * (2 * n + 1)
        return f"Use n(n+1)(2n+1)/6 with n={n}: {n}*{n + 1}*{2 * n + 1}/6 = {prod}/6 = {prod // 6}."
    if kind == "arith":
        a, d, n, last = p
        return (
            f"There are ({last}-{a})/{d}+1 = {n} terms. Pairing them: "
            f"{n}*({a}+{last})/2 = {n}*{a + last}/2 = {n * (a + last) // 2}."
        )
    if kind == "count":
        big_n, a, b, lcm = p
        qa, qb, ql = big_n // a, big_n // b, big_n // lcm
        return (
            f"Multiples of {a}: {qa}, of {b}: {qb}, of both ({lcm}): {ql}. "
            f"Inclusion-exclusion: {qa}+{qb}-{ql} = {qa + qb - ql}."
        )
    if kind == "linear":
        a, b, c = p
        return f"{a}x = {c}-{b} = {c - b}, so x = {c - b}/{a} = {(c - b) // a}."
    raise ValueError(kind)  # pragma: no cover


def tool_trace(raw: dict, rng: random.Random, profile: Any = None) -> tuple[str, str, str]:
    """(model text before the output block, the output block, model text after it) of a tool trace."""

    profile = profile or get_profile("nano")
    code = tool_snippet(raw, rng)
    before = profile.call_open + code + "\n" + profile.call_close
    block = profile.output_template.format(output=str(raw["answer"]))
    forms = ["The answer is \\boxed{{{a}}}.", "\\boxed{{{a}}}", "So the answer is \\boxed{{{a}}}."]
    after = forms[0] if RECIPE["data"].get("fixed_forms", True) else rng.choice(forms)
    return before, block, after.format(a=raw["answer"])


HAND_OPENINGS = (
    "Let me work it out by hand.\n",
    "I will compute this step by step.\n",
    "Working by hand:\n",
    "Compute it directly, step by step.\n",
)


def hand_trace(raw: dict, rng: random.Random, opening_fraction: float = 0.25) -> str:
    """A by-hand trace: (sometimes an opening sentence,) visible working, then the boxed answer."""
    start = rng.choice(HAND_OPENINGS) if rng.random() < opening_fraction else ""
    end = rng.choice(["\nThe answer is \\boxed{{{a}}}.", "\n\\boxed{{{a}}}", " So \\boxed{{{a}}}."])
    return start + hand_work(raw) + end.format(a=raw["answer"])
