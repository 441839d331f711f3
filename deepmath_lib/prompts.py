"""Prompts: the agent instruction with solved examples in the DeepMath call format, and the plain
chain-of-thought prompt of the no-tool baseline. Both are chat messages; the backend's tokenizer applies
its own chat template.

A profile's `prompt` picks whose: "ours" (below) or "original", IntelLabs/DeepMath's own prompt, read at run time
from its files (a local clone, or downloaded at a pinned commit) and never stored in this repository. Its Python
file is parsed with `ast` for its string constants; nothing downloaded is imported or executed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .profiles import Profile

PROMPTS = ("ours", "original")

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
    chat turns). tool=False: the plain chain-of-thought prompt of the baseline. With `profile.prompt ==
    "original"`: the original's system message and "question" template, or its baseline template.
    """
    original = check_prompt(profile)
    if original is not None:
        if not tool:
            return [{"role": "user", "content": original.baseline.format(question=problem)}]
        return [
            {"role": "system", "content": original.system},
            {"role": "user", "content": original.user.format(question=problem)},
        ]
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


# ---------------------------------------------------------------- the original's prompt, read from its files

ORIGINAL_REPO = "IntelLabs/DeepMath"
# The commit the fidelity table (docs/fidelity.md) was checked against. Only its short hash is known here, which pins a local
# clone (git resolves it) but not a download: downloading needs the full 40-hex hash ($DEEPMATH_ORIGINAL_COMMIT).
ORIGINAL_COMMIT = "278bb58"
ORIGINAL_PROMPTS_FILE = "deep_math/prompts.py"
ORIGINAL_FEWSHOT_FILE = "deep_math/fewshot.txt"
# The string constants of its prompts.py that make each message, as its training configuration
# (configs/training.yaml) and inference configuration name them. System: `agent_math_instruction`, formatted with the
# few-shot file: the training configuration's `system_instruction`, so the released adapter trained with it (its
# example.sh inference commands name `agent_math_instruction_2`, which its prompts.py does not define). User:
# `simple_template` ("Question: {question}"). Baseline (no tool): `deep_seek_math`, as its baseline command.
ORIGINAL_NAMES = {"system": "agent_math_instruction", "user": "simple_template", "baseline": "deep_seek_math"}
WAYS_OUT = (
    "give a local clone of IntelLabs/DeepMath with --original-repo PATH (or DEEPMATH_ORIGINAL_REPO=PATH), "
    "or run our own prompt with --prompt ours"
)
PROMPT_RECORD = "prompt.json"  # written by a GRPO run beside its weights: the prompt it trained with


class PromptUnavailable(FileNotFoundError):
    """The original's files could not be read; the message names the ways out."""


@dataclass(frozen=True)
class OriginalPrompt:
    """The original's messages: `system` (the instruction with the few-shot text in it), and the user message
    templates of the agent (`user`) and of the no-tool baseline (`baseline`), each with a `{question}` field."""

    system: str
    user: str
    baseline: str
    source: str  # where the files were read

    @property
    def sha256(self) -> str:
        return hashlib.sha256(repr((self.system, self.user, self.baseline)).encode()).hexdigest()


def string_constants(source: str, filename: str = "<source>") -> dict[str, str]:
    """The module-level `NAME = "text"` string constants of Python source, found by parsing it (never by importing
    or executing it). Raises SyntaxError for source that does not parse."""
    out: dict[str, str] = {}
    for node in ast.parse(source, filename).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            out[target.id] = value.value
    return out


def _read_clone(path: Path, commit: str) -> dict[str, str]:
    """The two files from a local folder: at `commit` when it is a git clone, else as they are."""
    names = (ORIGINAL_PROMPTS_FILE, ORIGINAL_FEWSHOT_FILE)
    if not path.is_dir():
        raise PromptUnavailable(f"original repository {path}: no such folder; {WAYS_OUT}")
    if not (path / ".git").exists():
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise PromptUnavailable(f"original repository {path} has no {', '.join(missing)}; {WAYS_OUT}")
        return {n: (path / n).read_text(encoding="utf-8") for n in names}
    files = {}
    for name in names:
        try:
            res = subprocess.run(
                ["git", "-C", str(path), "show", f"{commit}:{name}"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PromptUnavailable(f"could not run git in {path} ({exc}); {WAYS_OUT}") from exc
        if res.returncode != 0:
            why = (res.stderr.decode(errors="replace").strip().splitlines() or ["git failed"])[-1]
            raise PromptUnavailable(
                f"the clone {path} has no {name} at commit {commit} ({why}): fetch that commit there "
                f"(`git -C {path} fetch origin`), or run our own prompt with --prompt ours"
            )
        files[name] = res.stdout.decode("utf-8")
    return files


def _download(commit: str) -> dict[str, str]:
    """The two files from GitHub at a full 40-hex commit."""
    import urllib.error
    import urllib.request

    files = {}
    for name in (ORIGINAL_PROMPTS_FILE, ORIGINAL_FEWSHOT_FILE):
        url = f"https://raw.githubusercontent.com/{ORIGINAL_REPO}/{commit}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                files[name] = resp.read().decode("utf-8")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PromptUnavailable(f"could not download {url} ({exc}); {WAYS_OUT}") from exc
    return files


@functools.lru_cache(maxsize=8)
def load_original_prompt(repo: str | None, commit: str = ORIGINAL_COMMIT) -> OriginalPrompt:
    """The original's prompt from a local clone `repo` (at `commit` when it is a git clone), else downloaded at
    `commit`, which must then be a full 40-hex hash. Raises PromptUnavailable (files not reachable) or ValueError
    (files without the constants or placeholders the original's code uses), each naming what was wrong."""
    if repo:
        files, source = _read_clone(Path(repo).expanduser(), commit), str(repo)
    elif re.fullmatch(r"[0-9a-f]{40}", commit):
        files, source = _download(commit), f"https://github.com/{ORIGINAL_REPO}/tree/{commit}"
    else:
        raise PromptUnavailable(
            f"the original's prompt (IntelLabs/DeepMath at {commit}) is read from its files, and no copy was given: "
            f"{WAYS_OUT} (or set DEEPMATH_ORIGINAL_COMMIT to the commit's full 40-hex hash to download them)"
        )
    try:
        consts = string_constants(files[ORIGINAL_PROMPTS_FILE], ORIGINAL_PROMPTS_FILE)
    except SyntaxError as exc:
        raise ValueError(f"{source}: {ORIGINAL_PROMPTS_FILE} does not parse ({exc})") from exc
    missing = [n for n in ORIGINAL_NAMES.values() if n not in consts]
    if missing:
        raise ValueError(f"{source}: {ORIGINAL_PROMPTS_FILE} defines no string constant {', '.join(missing)}")
    texts = {role: consts[name] for role, name in ORIGINAL_NAMES.items()}
    try:  # as the original's code does: the instruction takes the few-shot file, the templates the question
        system = texts["system"].format(examples=files[ORIGINAL_FEWSHOT_FILE])
        for role in ("user", "baseline"):
            texts[role].format(question="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{source}: a template of {ORIGINAL_PROMPTS_FILE} has a field it is not given ({exc!r})"
        ) from exc
    return OriginalPrompt(system=system, user=texts["user"], baseline=texts["baseline"], source=source)


def original_source(profile: Profile) -> tuple[str | None, str]:
    """(local clone or None, commit) of a profile: its settings, else $DEEPMATH_ORIGINAL_REPO /
    $DEEPMATH_ORIGINAL_COMMIT, else no clone and ORIGINAL_COMMIT."""
    repo = profile.original_repo or os.environ.get("DEEPMATH_ORIGINAL_REPO") or None
    commit = profile.original_commit or os.environ.get("DEEPMATH_ORIGINAL_COMMIT") or ORIGINAL_COMMIT
    return repo, commit


def check_prompt(profile: Profile) -> OriginalPrompt | None:
    """Fail early: an unknown `prompt` is a ValueError; "original" loads the files now (PromptUnavailable when
    they cannot be read) and returns them; "ours" returns None."""
    if profile.prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {profile.prompt!r}; choose one of {list(PROMPTS)}")
    return load_original_prompt(*original_source(profile)) if profile.prompt == "original" else None


def prompt_record(profile: Profile) -> dict:
    """Which prompt a run uses, for fingerprints and GRPO outputs: {"prompt": "ours"}, or the original's with the
    commit asked for and the sha256 of its messages (what actually ran)."""
    original = check_prompt(profile)
    if original is None:
        return {"prompt": profile.prompt}
    return {"prompt": "original", "commit": original_source(profile)[1], "sha256": original.sha256}


def recorded_prompt(weights: str | Path | None) -> dict | None:
    """The prompt record a GRPO run left with weights: in the weights' folder or, for a checkpoint, in the run's
    folder above it. None for a hub id or weights without one."""
    if weights is None or not Path(weights).is_dir():
        return None
    for folder in (Path(weights), Path(weights).parent):
        if (folder / PROMPT_RECORD).is_file():
            return json.loads((folder / PROMPT_RECORD).read_text())
    return None


def prompt_for(profile: Profile, weights: str | Path | None = None, prompt: str | None = None) -> Profile:
    """The profile with the prompt a run uses: `prompt` when given, else the one recorded with `weights` (a GRPO
    output evaluates with the prompt it trained with), else the profile's own. The prompt is loaded now, so a run
    fails before any model loads; a recorded original prompt must be the same text as the one found now."""
    rec = recorded_prompt(weights) if prompt is None else None
    prof = profile.with_overrides(prompt=prompt or (rec or {}).get("prompt") or profile.prompt)
    now = prompt_record(prof)
    if rec and rec.get("prompt") == "original" and rec.get("sha256") != now["sha256"]:
        raise ValueError(
            f"{weights} was trained with the original's prompt {str(rec.get('sha256'))[:12]}, but "
            f"{load_original_prompt(*original_source(prof)).source} gives {now['sha256'][:12]}: point "
            "--original-repo at the files it trained with, or choose with --prompt"
        )
    return prof
