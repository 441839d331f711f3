"""Prompts: the agent instruction with solved examples in the DeepMath call format, and the plain
chain-of-thought prompt of the no-tool baseline. Both are chat messages; the backend's tokenizer applies
its own chat template."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile

COT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."

SYSTEM_TEMPLATE = (
    "You are a careful mathematician who can run Python. Reason step by step. When a step needs exact or "
    "lengthy computation (big products, modular powers, sums, counting, solving equations), write a short "
    "Python snippet between {call_open_inline} and {call_close}. It runs in a sandbox; what it prints, and the "
    "value of a last bare expression, comes back in an ```output block. Variables persist between snippets. "
    "math, sympy, numpy, fractions and itertools are available. Keep each snippet small, read its output, and "
    "finish with the final answer in \\boxed{{}}."
)


@dataclass(frozen=True)
class Example:
    """A solved example: text and (code, output) steps, ending with a boxed answer."""

    problem: str
    steps: tuple  # of str (reasoning) or (code, output) pairs
    answer: str


# Four solved examples; the outputs are what our sandbox prints (tests/test_prompts.py re-runs them).
EXAMPLES: tuple[Example, ...] = (
    Example(
        problem="What is 248*365?",
        steps=(("print(248*365)", "90520"),),
        answer="90520",
    ),
    Example(
        problem="What is the remainder when 7^222 is divided by 1000?",
        steps=(
            ("print(pow(7, 222, 1000))", "49"),
            "A modular power, computed exactly: the remainder is 49.\n",
        ),
        answer="49",
    ),
    Example(
        problem="Find the sum of all positive integers n < 100 such that n^2 + 1 is divisible by 5.",
        steps=(
            ("ns = [n for n in range(1, 100) if (n*n + 1) % 5 == 0]\nprint(len(ns), sum(ns))", "40 2000"),
            "There are 40 such n, and their sum is 2000.\n",
        ),
        answer="2000",
    ),
    Example(
        problem="Solve for x: 3x + 7 = 2x - 5 + 4x.",
        steps=(
            (
                "from sympy import symbols, solve\nx = symbols('x')\nprint(solve(3*x + 7 - (2*x - 5 + 4*x), x))",
                "[4]",
            ),
            "The equation is linear with the single root x = 4.\n",
        ),
        answer="4",
    ),
)


def render_solution(example: Example, profile: Profile) -> str:
    """The assistant text of a solved example in the profile's call format."""
    parts = []
    for step in example.steps:
        if isinstance(step, str):
            parts.append(step)
        else:
            code, output = step
            parts.append(profile.call_open + code + "\n" + profile.call_close)
            parts.append(profile.output_template.format(output=output))
    parts.append(f"The answer is \\boxed{{{example.answer}}}.")
    return "".join(parts)


def system_prompt(profile: Profile) -> str:
    return SYSTEM_TEMPLATE.format(call_open_inline=profile.call_open.strip(), call_close=profile.call_close)


def build_messages(problem: str, profile: Profile, tool: bool = True) -> list[dict[str, str]]:
    """Chat messages for one problem.

    tool=True: the agent prompt (system instruction + `profile.n_shots` solved examples, inline or as prior
    chat turns). tool=False: the plain chain-of-thought prompt of the baseline.
    """
    if not tool:
        return [{"role": "user", "content": problem + COT_SUFFIX}]
    messages: list[dict[str, str]] = []
    examples = EXAMPLES[: profile.n_shots]
    if profile.system_prompt:
        system = system_prompt(profile)
        if examples and not profile.few_shot_as_turns:
            shots = "\n\n".join(
                f"Example {i + 1}.\nProblem: {ex.problem}\nSolution: {render_solution(ex, profile)}"
                for i, ex in enumerate(examples)
            )
            system += "\n\n" + shots
        messages.append({"role": "system", "content": system})
    if profile.few_shot_as_turns:
        for ex in examples:
            messages.append({"role": "user", "content": ex.problem})
            messages.append({"role": "assistant", "content": render_solution(ex, profile)})
    messages.append({"role": "user", "content": problem})
    return messages
