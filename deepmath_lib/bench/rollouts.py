"""`deepmath bench rollouts`: N agent trajectories in flight at once vs one at a time, same model and sampling,
measured side by side in one run. The last line printed is JSON with a `speedup` key."""

from __future__ import annotations

import json
import sys
import time

from ..profiles import get_profile


def _problems(profile, n: int) -> list[str]:
    from ..datasets import GENERATORS, load_problems

    if profile.eval_datasets[0] in GENERATORS:
        return [p["problem"] for p in load_problems(profile.eval_datasets[0], n=n)]
    from ..prompts import EXAMPLES

    return [EXAMPLES[i % len(EXAMPLES)].problem for i in range(n)]


def measure(profile_name: str = "nano", n: int = 64, seed: int = 0, backend: str | None = None) -> dict:
    """Time `n` trajectories with `n` in flight and with one in flight, on the same model: a batched transformers
    backend per mode, or one engine (vllm) serving both."""
    from ..agent import run_agent
    from ..backends import TransformersBackend, load_model, make_backend

    prof = get_profile(profile_name, backend=backend)
    problems = _problems(prof, n)
    sampling = prof.train_sampling  # the rollout setting: sampled, the GRPO token budget
    if prof.backend == "transformers":
        model, tok = load_model(prof, device="cpu")
        engine = None

        def make(conc: int):
            return TransformersBackend(model, tok, max_batch=conc)
    else:
        engine = make_backend(prof)

        def make(conc: int):
            return engine

    # warm-up: the sandbox zygote (started once per process), first forward pass
    from ..sandbox import start_zygote

    start_zygote()
    run_agent(make(4), problems[:4], prof, sampling=sampling, seed=seed, concurrency=4)
    rows = {}
    for name, conc in (("concurrent", n), ("sequential", 1)):
        backend = make(conc)
        t0 = time.perf_counter()
        trajs = run_agent(backend, problems, prof, sampling=sampling, seed=seed, concurrency=conc)
        dt = time.perf_counter() - t0
        tokens = sum(t.model_tokens for t in trajs)
        rows[name] = {
            "seconds": round(dt, 2),
            "trajectories": len(trajs),
            "model_tokens": tokens,
            "model_tokens_per_s": round(tokens / dt, 1),
            "calls": sum(len(t.calls) for t in trajs),
            "code_use_rate": round(sum(t.n_calls_ok > 0 for t in trajs) / len(trajs), 3),
        }
    if engine is not None:
        engine.close()
    # Same sampling, different random draws: compare throughput in tokens/s as well as wall time per trajectory.
    speedup = rows["concurrent"]["model_tokens_per_s"] / rows["sequential"]["model_tokens_per_s"]
    return {
        "bench": "rollouts",
        "profile": prof.name,
        "backend": prof.backend,
        "n": n,
        **{f"{k}_{m}": v for k, r in rows.items() for m, v in r.items()},
        "speedup": round(speedup, 2),
        "wall_speedup": round(rows["sequential"]["seconds"] / rows["concurrent"]["seconds"], 2),
    }


def bench_main(profile: str = "nano", n: int = 64, backend: str | None = None, save: bool = True) -> int:
    if n < 2:
        print(f"error: --n must be at least 2, got {n}", file=sys.stderr)
        return 2
    try:
        res = measure(profile, n, backend=backend)
    except (
        ValueError,
        RuntimeError,
    ) as exc:  # e.g. --backend openai (no server to bench), vLLM not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'mode':<12}{'seconds':>9}{'model tok':>11}{'tok/s':>9}{'calls':>7}")
    for mode in ("concurrent", "sequential"):
        print(
            f"{mode:<12}{res[f'{mode}_seconds']:>9}{res[f'{mode}_model_tokens']:>11}"
            f"{res[f'{mode}_model_tokens_per_s']:>9}{res[f'{mode}_calls']:>7}"
        )
    print(f"speedup (tokens/s): {res['speedup']}x   wall-time speedup: {res['wall_speedup']}x")
    if save:
        from . import save as store

        name = f"rollouts_{res['profile']}_{res['backend']}"
        print(f"saved {store(name, res)}")
    print(json.dumps(res))
    return 0
