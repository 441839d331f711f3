"""`deepmath bench rollouts`: the agent loop against its limit, in one run on one model.

The figures, same model and sampling:
- **raw**: one batched `generate` of `slots` rows (the first prompts), every row `mean` new tokens long, where `mean` is
  the concurrent run's mean model tokens per trajectory: what the hardware gives with no agent around it;
- **concurrent**: `n` agent trajectories through a batch of `slots` rows, with `in_flight` (default 2 x `slots`) of them
  started at once: a trajectory waiting on the sandbox holds no row, so with `in_flight` > `slots` a queued request
  takes the row it freed (more trajectories than slots, so freed slots are refilled), sandbox calls and all;
- **presandboxed**: the concurrent run again with its `n` sandboxes started before the clock and closed after it
  (same trajectories, same tokens in deterministic mode): how much of the loop's throughput starting and closing a
  sandbox per trajectory (a fork of the warmed zygote, an exit) takes from generation on this machine's cores
  (`sandbox_share`);
- **sequential**: trajectories one at a time (the first `seq_n` problems);
- **raw, one row**: the same `generate` on the first prompt alone: what batching itself gains on this model and
  machine (`raw_speedup`), the ceiling `speedup` would reach if the loop ran at raw speed both ways.

They are measured in turn, `repeats` times, and each figure is the median run (the machine's speed drifts).

`speedup` = concurrent / sequential model tokens per second; `fraction_of_raw` = concurrent / raw. The transformers
backend runs in its deterministic mode (the one used for training, evaluation and committed results). The last line
printed is JSON."""

from __future__ import annotations

import asyncio
import time

from ..agent import default_sandbox_factory, prompt_ids_for, run_agent
from ..backends import TransformersBackend, load_model, make_backend
from ..datasets import GENERATORS, load_problems
from ..models import trained_model_path
from ..profiles import DEFAULT_PROFILE, get_profile
from ..prompts import EXAMPLES
from ..sandbox import start_zygote

GOALS = {"rollout_speedup": 10.0, "fraction_of_raw": 0.6}  # set for nano on a 2-core CPU


def _problems(profile, n: int) -> list[str]:

    if profile.eval_datasets[0] in GENERATORS:
        return [p["problem"] for p in load_problems(profile.eval_datasets[0], n=n)]

    return [EXAMPLES[i % len(EXAMPLES)].problem for i in range(n)]


def _raw_transformers(model, tok, prompts: list[list[int]], new: int, sampling) -> float:
    """Model tokens per second of one batched `generate`, every row exactly `new` tokens."""
    import torch

    pad = tok.pad_token_id
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    att = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding
        ids[row, width - len(p) :] = torch.tensor(p)
        att[row, width - len(p) :] = 1
    kw = (
        dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        if sampling.temperature
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    )
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            input_ids=ids.to(device),
            attention_mask=att.to(device),
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=pad,
            **kw,
        )
    return len(prompts) * new / (time.perf_counter() - t0)


def _raw_engine(engine, prompts: list[list[int]], new: int, sampling) -> float:
    """The same through a vLLM engine: all rows as concurrent requests, EOS ignored."""

    async def go():
        t0 = time.perf_counter()
        outs = await asyncio.gather(
            *(engine._raw(p, new, [], [], sampling, ignore_eos=True, min_tokens=new) for p in prompts)
        )
        return sum(len(o.token_ids) for o in outs) / (time.perf_counter() - t0)

    return engine._thread.call(go())  # the engine's own event loop (see aio.LoopThread)


class _StartedSandboxes:
    """`count` of the profile's sandboxes, started now; `factory` hands them out in order (one per trajectory, as
    the agent starts them), `close()` closes them all. Trajectories' own closes are left to `close()`."""

    def __init__(self, prof, count: int):

        make = default_sandbox_factory(prof)
        self._boxes = []
        try:
            for _ in range(count):
                self._boxes.append(make())
        except BaseException:
            self.close()
            raise
        self._next = iter(self._boxes)
        # the zygote forks its spares back meanwhile, as it does before any run: not inside the clock
        time.sleep(0.5)

    def factory(self):
        return _Kept(next(self._next))

    def close(self) -> None:
        for box in self._boxes:
            box.close()


class _Kept:
    """A started sandbox lent to one trajectory: runs go through, its close waits for `_StartedSandboxes.close`."""

    def __init__(self, box):
        self.run = box.run

    def close(self) -> None:
        pass


def measure(
    profile_name: str = DEFAULT_PROFILE,
    n: int = 256,
    slots: int = 64,
    seq_n: int = 32,
    seed: int = 0,
    backend: str | None = None,
    repeats: int = 3,
    in_flight: int | None = None,
) -> dict:
    """Raw batched generation, `n` trajectories through `slots` batch rows (`in_flight` started at once), and `seq_n`
    one at a time (see the module)."""

    prof = get_profile(profile_name, backend=backend)
    in_flight = in_flight or 2 * slots
    problems = _problems(prof, n)
    sampling = prof.train_sampling  # the rollout setting: sampled, the GRPO token budget
    weights = trained_model_path(prof)
    if prof.backend == "transformers":
        model, tok = load_model(prof, model_path=weights, device="cpu")
        engine = None

        def make(conc: int):
            return TransformersBackend(model, tok, max_batch=conc)
    else:
        engine = make_backend(prof, model_path=weights)
        model, tok = None, engine.tokenizer

        def make(conc: int):
            return engine

    # warm-up: the sandbox zygote (started once per process), first forward passes

    start_zygote()
    run_agent(make(4), problems[:8], prof, sampling=sampling, seed=seed, concurrency=4)
    prompts = [prompt_ids_for(tok, p, prof, True) for p in problems[:slots]]
    prompts = (prompts * (slots // len(prompts) + 1))[:slots]
    if engine is None:
        _raw_transformers(model, tok, prompts[:4], 4, sampling)  # warm-up
    # The measurements interleaved, `repeats` times (this machine's speed drifts); medians reported.
    runs: dict[str, list[dict]] = {
        "concurrent": [],
        "presandboxed": [],
        "sequential": [],
        "raw": [],
        "raw_one_row": [],
    }
    for _ in range(repeats):
        for name, rows, conc, count in (
            ("concurrent", slots, in_flight, n),
            ("presandboxed", slots, in_flight, n),
            ("sequential", 1, 1, min(seq_n, n)),
        ):
            be = make(rows)
            ready = _StartedSandboxes(prof, count) if name == "presandboxed" else None
            try:
                t0 = time.perf_counter()
                trajs = run_agent(
                    be,
                    problems[:count],
                    prof,
                    sampling=sampling,
                    seed=seed,
                    concurrency=conc,
                    sandbox_factory=ready.factory if ready else None,
                )
                dt = time.perf_counter() - t0
            finally:
                if ready:
                    ready.close()
            steps = {}
            if engine is None:  # where the batch's rows went (see SlotEngine.stats)
                st = be.engine.stats
                steps = {
                    "steps": st["decode_steps"],
                    "rows_per_step": round(st["rows"] / max(1, st["decode_steps"]), 1),
                    "sparse_steps": st["sparse_steps"],
                    "sparse_seconds": round(st["sparse_s"], 2),
                    "prefill_tokens": st["prefill_tokens"],
                }
                be.close()
            tokens = sum(t.model_tokens for t in trajs)
            runs[name].append(
                {
                    "seconds": round(dt, 2),
                    "trajectories": len(trajs),
                    "model_tokens": tokens,
                    "max_model_tokens": max(t.model_tokens for t in trajs),
                    "model_tokens_per_s": round(tokens / dt, 1),
                    "calls": sum(len(t.calls) for t in trajs),
                    "code_use_rate": round(sum(t.n_calls_ok > 0 for t in trajs) / len(trajs), 3),
                    **steps,
                }
            )
        mean_new = max(
            1, round(runs["concurrent"][0]["model_tokens"] / runs["concurrent"][0]["trajectories"])
        )
        for name, batch in (("raw", prompts), ("raw_one_row", prompts[:1])):
            if engine is None:
                raw = _raw_transformers(model, tok, batch, mean_new, sampling)
            else:
                raw = _raw_engine(engine, batch, mean_new, sampling)
            runs[name].append(
                {"rows": len(batch), "new_tokens_per_row": mean_new, "model_tokens_per_s": round(raw, 1)}
            )
    if engine is not None:
        engine.close()
    rows = {}
    for name, rs in runs.items():
        mid = sorted(rs, key=lambda r: r["model_tokens_per_s"])[len(rs) // 2]  # the median run
        rows[name] = {**mid, "model_tokens_per_s_runs": [r["model_tokens_per_s"] for r in rs]}
    raw = rows["raw"]["model_tokens_per_s"]
    speedup = rows["concurrent"]["model_tokens_per_s"] / rows["sequential"]["model_tokens_per_s"]
    return {
        "bench": "rollouts",
        "profile": prof.name,
        "backend": prof.backend,
        "mode": "deterministic" if engine is None else "engine",
        "weights": weights or "base",
        "n": n,
        "slots": slots,
        "in_flight": in_flight,
        "repeats": repeats,
        **{f"{k}_{m}": v for k, r in rows.items() for m, v in r.items()},
        "speedup": round(speedup, 2),
        "fraction_of_raw": round(rows["concurrent"]["model_tokens_per_s"] / raw, 3),
        "raw_speedup": round(raw / rows["raw_one_row"]["model_tokens_per_s"], 2),
        "sandbox_share": round(
            1 - rows["concurrent"]["model_tokens_per_s"] / rows["presandboxed"]["model_tokens_per_s"], 3
        ),
    }
