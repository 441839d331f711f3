"""The agent loop, at the token level, for many trajectories at once.

One coroutine per trajectory: generate until the code-close tag/token or EOS, run the snippet in the trajectory's
own Sandbox, append the output block's tokens with env mask 0, continue -- within a budget of generated (model)
tokens and a cap on calls. Generated ids are only ever concatenated, never decoded and re-encoded. The same loop
serves notebooks, the CLI, GRPO rollouts and evaluation; the backend decides how trajectories are batched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .aio import run_sync as _run_sync  # the name smolagent imports
from .backends import Backend, Stop
from .profiles import Profile, Sampling
from .prompts import build_messages
from .sandbox import Sandbox
from .trace import call_stop, extract_code, prose_answer


@dataclass
class Call:
    code: str
    output: str  # the text placed in the output block (already cut and neutralised)
    ok: bool
    timed_out: bool = False
    duration_s: float = 0.0
    formed: bool = True  # written between both tags (False: a close tag with no open tag before it)


@dataclass
class Trajectory:
    """One agent episode. `env_mask` is 1 on model tokens and 0 on executor-output tokens."""

    problem: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    text: str = ""
    calls: list[Call] = field(default_factory=list)
    finish_reason: str = "eos"
    answer: str | None = None
    error: str | None = None

    @property
    def model_tokens(self) -> int:
        return sum(self.env_mask)

    @property
    def total_tokens(self) -> int:
        return len(self.completion_ids)

    @property
    def n_calls_ok(self) -> int:
        return sum(c.ok for c in self.calls)

    @property
    def n_calls_formed(self) -> int:
        return sum(c.formed for c in self.calls)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(model_tokens=self.model_tokens, total_tokens=self.total_tokens, n_calls_ok=self.n_calls_ok)
        return d


def default_sandbox_factory(profile: Profile) -> Callable[[], Any]:
    """A factory of the profile's Sandbox (one per trajectory)."""

    def make():
        return Sandbox(
            timeout=profile.sandbox_timeout,
            memory_mb=profile.sandbox_memory_mb,
            max_output_chars=profile.max_output_chars,
        )

    return make


def prompt_ids_for(tokenizer, problem: str, profile: Profile, tool: bool) -> list[int]:
    """Token ids of the chat prompt for one problem (agent prompt if `tool`, else the plain CoT prompt)."""
    messages = build_messages(problem, profile, tool=tool)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


async def run_trajectory(
    backend: Backend,
    prompt_ids: list[int],
    profile: Profile,
    sampling: Sampling,
    *,
    tool: bool = True,
    problem: str = "",
    sandbox_factory: Callable[[], Any] | None = None,
    tag: int = 0,
    closers: list | None = None,
    start_gate: asyncio.Semaphore | None = None,
) -> Trajectory:
    """Run one trajectory to its finish reason: answer, eos, budget, calls (cap reached), context (prompt,
    generated and executor tokens reached `profile.max_model_len`) or error.
    `start_gate` (run_agent's) lets sandboxes start a few at a time, in the order trajectories start."""
    tok = backend.tokenizer
    traj = Trajectory(problem=problem, prompt_ids=list(prompt_ids))
    stop = call_stop(tok, profile) if tool else Stop()
    budget = sampling.max_model_tokens
    sandbox = None
    logprobs: list[float] = []
    have_logprobs = True
    segments: list[str] = []
    steps = 0
    since_call: list[int] = []  # generated ids since the last call (a call may span steps)
    resume_step = False
    backend.trajectory_started(tag)
    # the sandbox starts while the first step generates, so the first call does not wait for it
    starting = (
        asyncio.ensure_future(_start_sandbox(sandbox_factory or default_sandbox_factory(profile), start_gate))
        if tool
        else None
    )
    try:
        while True:
            remaining = budget - traj.model_tokens
            if remaining <= 0:
                traj.finish_reason = "budget"
                break
            # One agent step generates at most `max_tokens_per_step` (the original: 3,000); a step cut there is
            # followed by another, up to `max_calls` steps in all.
            step_cap = min(remaining, profile.max_tokens_per_step or remaining)
            # The context guard: the engine refuses (vLLM raises) a request that would pass its context length, so
            # a step never asks for more than the room left, and a trajectory with no room left ends here.
            room = context_room(traj, profile)
            if room <= 0:
                traj.finish_reason = "context"
                break
            context_capped = room < step_cap
            step_cap = min(step_cap, room)
            out = await backend.generate(
                traj.prompt_ids + traj.completion_ids, step_cap, sampling, stop, tag=tag
            )
            steps += 1
            since_call = (since_call if resume_step else []) + out.token_ids
            resume_step = False
            traj.completion_ids += out.token_ids
            traj.env_mask += [1] * len(out.token_ids)
            if out.logprobs is not None and have_logprobs:
                logprobs += out.logprobs
            else:
                have_logprobs = False
            segment = tok.decode(out.token_ids, skip_special_tokens=True)
            segments.append(segment)
            if out.finish == "eos" or not out.token_ids:
                traj.finish_reason = "eos"
                break
            if out.finish == "length":
                if context_capped:
                    traj.finish_reason = "context"
                    break
                if step_cap < remaining and steps < profile.max_calls:
                    resume_step = True
                    continue  # the step's own cap, not the budget: the next step goes on
                traj.finish_reason = "budget" if step_cap == remaining else "calls"
                break
            # A code call: run it, fold the output back in (masked), continue.
            if len(traj.calls) >= profile.max_calls:
                traj.finish_reason = "calls"
                break
            code = extract_code(tok.decode(since_call, skip_special_tokens=False), profile)
            if sandbox is None:
                sandbox = await starting
            if code is None:
                call = Call(code="", output="error: code block has no opening tag", ok=False, formed=False)
            else:
                with backend.executing():
                    res = await asyncio.to_thread(sandbox.run, code)
                # trailing newlines dropped: the block template supplies its own
                call = Call(code, res.model_text().rstrip(), res.error is None, res.timed_out, res.duration_s)
            traj.calls.append(call)
            block = profile.output_template.format(output=call.output)
            block_ids = tok.encode(block, add_special_tokens=False)
            # an output block that would pass the context is cut there; the next step then ends the trajectory
            room = max(context_room(traj, profile), 0)
            if len(block_ids) > room:
                block_ids = block_ids[:room]
                block = tok.decode(block_ids, skip_special_tokens=False)
            traj.completion_ids += block_ids
            traj.env_mask += [0] * len(block_ids)
            if have_logprobs:
                logprobs += [0.0] * len(block_ids)
            segments.append(block)
    except Exception as exc:  # a backend failure ends this trajectory only
        traj.finish_reason = "error"
        traj.error = f"{type(exc).__name__}: {exc}"
    finally:
        backend.trajectory_finished(tag)
        if starting is not None:
            closing = asyncio.ensure_future(_close_sandbox(starting))
            if closers is None:
                await closing
            else:  # the caller awaits it later, so the next trajectory starts without waiting for the close
                closers.append(closing)
    traj.text = "".join(segments)
    traj.logprobs = logprobs if have_logprobs and logprobs else None
    # The answer is the model's own prose: neither code nor executor output can supply it.
    traj.answer = prose_answer(traj.text, profile)
    if traj.finish_reason == "eos" and traj.answer is not None:
        traj.finish_reason = "answer"
    return traj


def context_room(traj: Trajectory, profile: Profile) -> int:
    """Tokens left before the trajectory (prompt, generated and executor tokens) fills `profile.max_model_len`;
    unbounded (a large number) when the profile sets none."""
    if not profile.max_model_len:
        return 2**62
    return profile.max_model_len - len(traj.prompt_ids) - len(traj.completion_ids)


async def _start_sandbox(factory: Callable[[], Any], gate: asyncio.Semaphore | None):
    """A sandbox from `factory`, in a thread. Workers are forked one at a time, so when many trajectories start
    at once the gate (first come, first served) keeps them in start order: the first trajectories' sandboxes are
    ready first, instead of all of them late."""
    async with gate or contextlib.nullcontext():
        return await asyncio.to_thread(factory)


async def _close_sandbox(starting: asyncio.Future) -> None:
    with contextlib.suppress(Exception):  # a sandbox that failed to start has nothing to close
        sandbox = await starting
        await asyncio.to_thread(sandbox.close)


SANDBOX_STARTS = 2  # sandboxes starting at once in a run (the zygote forks one at a time)


def run_agent(
    backend: Backend,
    problems: Sequence[str],
    profile: Profile,
    *,
    samples: int = 1,
    tool: bool = True,
    sampling: Sampling | None = None,
    concurrency: int | None = None,
    sandbox_factory: Callable[[], Any] | None = None,
    progress: bool = False,
    seed: int | None = None,
    prompt_ids: Sequence[list[int]] | None = None,
    on_result: Callable[[int, Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Run `samples` trajectories per problem, up to `concurrency` in flight; results in problem-major order.

    `prompt_ids` (one per problem) overrides the chat prompt; `on_result(index, trajectory)` is called as each
    trajectory finishes (used to append results to a store immediately).
    """
    import torch

    sampling = sampling or profile.eval_sampling
    concurrency = concurrency or profile.concurrency
    if seed is not None:
        torch.manual_seed(seed)
    run_seed = int(torch.randint(0, 2**62, ()).item())  # from the (seeded) global generator
    tok = backend.tokenizer
    prompts = (
        [list(p) for p in prompt_ids]
        if prompt_ids is not None
        else [prompt_ids_for(tok, p, profile, tool) for p in problems]
    )
    jobs = [(i, j) for i in range(len(problems)) for j in range(samples)]
    backend.start_run(len(jobs), concurrency, run_seed)

    async def main() -> list[Trajectory]:
        # Sandbox starts, calls and closes run in threads (they block on a socket): enough threads that no
        # trajectory's call queues behind the others' (the default pool has cores + 4).
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=2 * concurrency + 4, thread_name_prefix="sandbox")
        )
        sem = asyncio.Semaphore(concurrency)
        starts = asyncio.Semaphore(SANDBOX_STARTS)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="trajectories", leave=False)

        async def one(idx: int, i: int) -> Trajectory:
            async with sem:
                traj = await run_trajectory(
                    backend,
                    prompts[i],
                    profile,
                    sampling,
                    tool=tool,
                    problem=problems[i],
                    sandbox_factory=sandbox_factory,
                    tag=idx,
                    closers=closers,
                    start_gate=starts,
                )
            if on_result is not None:
                on_result(idx, traj)
            if bar is not None:
                bar.update(1)
            return traj

        closers: list = []
        try:
            return await asyncio.gather(*(one(idx, i) for idx, (i, _) in enumerate(jobs)))
        finally:
            await asyncio.gather(*closers, return_exceptions=True)
            if bar is not None:
                bar.close()

    return list(_run_sync(main()))


def question_error(question: str, profile: Profile) -> str | None:
    """Why `question` cannot be asked of `profile` (None when it can): empty, not valid UTF-8 (a command line's bytes
    arrive as lone surrogates), or longer than the profile's context leaves room for. The length limit counts
    characters against tokens: a token spans at least one character in the profiles' tokenizers, so a question
    within `max_model_len - max_model_tokens` characters leaves the answer its budget (the prompt's examples take
    the rest); one beyond it would ask the model for more positions than it has."""
    if not question.strip():
        return "the question is empty"
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = question[exc.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"U+{ord(bad):04X}"
        return f"the question is not valid UTF-8 ({byte} at character {exc.start + 1})"
    budget = profile.eval_sampling.max_model_tokens
    limit = profile.max_model_len - budget
    if len(question) > limit:
        return (
            f"the question is {len(question):,} characters; the {profile.name} profile's context of "
            f"{profile.max_model_len:,} tokens, {budget:,} of them kept for the answer, holds at most {limit:,}"
        )
    return None
