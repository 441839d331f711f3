"""The continuous-batching engine behind TransformersBackend: same tokens as `generate`, cache rows reused across a
trajectory's calls, reproducible whatever the sandbox's timing, slots freed and refilled."""

import asyncio
import random
import time

import pytest
import torch

from deepmath_lib.agent import default_sandbox_factory, prompt_ids_for, run_agent
from deepmath_lib.backends import Stop, TransformersBackend
from deepmath_lib.profiles import Sampling, get_profile

PROFILE = get_profile("nano")
GREEDY = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_model_tokens=40)


@pytest.fixture(scope="module")
def nano():
    from deepmath_lib.nano import generate_problems, load_nano

    model, tok = load_nano()
    problems = [p["problem"] for p in generate_problems(24, split="eval")]
    return model, tok, problems


def _hf_greedy(model, tok, ids: list[int], n: int, eos) -> list[int]:
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=list(eos),
        )
    return out[0, len(ids) :].tolist()


def _gen(backend, requests, last: bool = False):
    """Run (ids, max_new, stop, tag) requests concurrently through one backend; their outputs in order. `last`:
    each is its trajectory's last request, so the engine is told the trajectory finished (as `run_agent` does);
    in a run announced by `start_run` the engine otherwise waits for the trajectory's next request."""

    async def one(i, m, s, t):
        out = await backend.generate(i, m, GREEDY, s, tag=t)
        if last:
            backend.trajectory_finished(t)
        return out

    async def go():
        return await asyncio.gather(*(one(*r) for r in requests))

    return asyncio.run(go())


def test_greedy_batch_matches_generate_row_by_row(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=5)  # fewer slots than requests: slots are refilled
    prompts = [prompt_ids_for(tok, p, PROFILE, tool=False) for p in problems[:9]]
    prompts[3] = prompts[3] + prompts[4][:7]  # uneven lengths
    outs = _gen(backend, [(p, 30, Stop(), i) for i, p in enumerate(prompts)])
    for p, out in zip(prompts, outs, strict=True):
        want = _hf_greedy(model, tok, p, 30, backend.eos_ids)
        assert out.token_ids == want
        assert out.finish == ("eos" if want[-1] in backend.eos_ids else "length")
    stats = backend.engine.stats
    assert stats["prefills"] >= 2  # later requests joined a running batch
    backend.close()


def test_new_prompts_that_start_alike_share_one_prefill(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=8)
    lead = "Think it through, then compute every step with the tool and check its output. "  # > MIN_SHARED
    prompts = [prompt_ids_for(tok, lead + p, PROFILE, tool=True) for p in problems[:5]]
    prompts += [prompts[0]] * 3  # a GRPO group: one prompt, several completions
    # all due at once: one admission, whatever the timing
    backend.start_run(len(prompts), len(prompts), seed=0)
    outs = _gen(backend, [(p, 20, Stop(), i) for i, p in enumerate(prompts)], last=True)
    for p, out in zip(prompts, outs, strict=True):
        assert out.token_ids == _hf_greedy(model, tok, p, 20, backend.eos_ids)
    stats = backend.engine.stats
    assert stats["shared_prefills"] == 1 and stats["prefills"] == 1
    shared = len(lead)
    assert stats["reused_tokens"] >= len(prompts) * shared  # every row started from the shared part
    assert stats["prefill_tokens"] < sum(map(len, prompts)) - (len(prompts) - 1) * shared
    backend.close()


def test_continuation_reuses_the_cache_and_matches_a_fresh_prefill(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=4)
    prompt = prompt_ids_for(tok, problems[0], PROFILE, tool=True)
    first = _gen(backend, [(prompt, 12, Stop(), 0)])[0]
    forced = tok.encode(
        "\n```output\n123\n```\n", add_special_tokens=False
    )  # a tool output, as the agent appends
    cont = prompt + first.token_ids + forced
    reused_before = backend.engine.stats["reused_tokens"]
    second = _gen(backend, [(cont, 15, Stop(), 0)])[0]
    # everything but the last sampled token and the forced block came from the kept cache row
    assert backend.engine.stats["reused_tokens"] - reused_before == len(prompt) + len(first.token_ids) - 1
    assert second.token_ids == _hf_greedy(model, tok, cont, 15, backend.eos_ids)
    backend.close()


def test_stops_limits_and_empty_requests(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=4)
    prompt = prompt_ids_for(tok, problems[1], PROFILE, tool=False)
    free = _hf_greedy(model, tok, prompt, 25, backend.eos_ids)
    stop_id = free[4]
    outs = _gen(
        backend,
        [(prompt, 25, Stop(token_ids=(stop_id,)), 0), (prompt, 3, Stop(), 1), (prompt, 0, Stop(), 2)],
    )
    cut = free.index(stop_id) + 1
    assert outs[0].token_ids == free[:cut] and outs[0].finish == "stop"
    assert outs[1].token_ids == free[:3] and outs[1].finish == "length"
    assert outs[2].token_ids == [] and outs[2].finish == "length"
    # a close string after its open string stops; the open string alone does not
    text = tok.decode(free, skip_special_tokens=False)
    close = text[6:8]
    pair = Stop(pairs=((text[2:4], close),))
    out = _gen(backend, [(prompt, 25, pair, 3)])[0]
    assert pair.hit(tok.decode(out.token_ids, skip_special_tokens=False)) and out.finish == "stop"
    assert not pair.hit(tok.decode(out.token_ids[:-1], skip_special_tokens=False))
    backend.close()


class _Jittery:
    """A real sandbox whose calls and start take a random extra time: the batch must not depend on it."""

    def __init__(self, rng: random.Random):
        self.inner = default_sandbox_factory(PROFILE)()
        self.rng = rng
        time.sleep(rng.random() * 0.03)

    def run(self, code):
        time.sleep(self.rng.random() * 0.05)
        return self.inner.run(code)

    def close(self):
        self.inner.close()


def test_deterministic_whatever_the_sandbox_timing(nano):
    model, tok, problems = nano
    from deepmath_lib.models import load_model, trained_model_path

    trained, _ = load_model(PROFILE, model_path=trained_model_path(PROFILE))  # it calls the tool
    runs = []
    for seed in (1, 2):
        rng = random.Random(seed)
        backend = TransformersBackend(trained, tok, max_batch=6)
        trajs = run_agent(
            backend,
            problems[:16],
            PROFILE,
            sampling=PROFILE.train_sampling,
            seed=5,
            concurrency=10,
            sandbox_factory=lambda rng=rng: _Jittery(rng),
        )
        backend.close()
        runs.append(trajs)
    a, b = runs
    assert sum(len(t.calls) for t in a) >= 8  # the tool was used, so trajectories left and rejoined the batch
    assert [t.completion_ids for t in a] == [t.completion_ids for t in b]
    # and a different seed samples differently
    backend = TransformersBackend(trained, tok, max_batch=6)
    c = run_agent(backend, problems[:16], PROFILE, sampling=PROFILE.train_sampling, seed=6, concurrency=10)
    backend.close()
    assert [t.completion_ids for t in c] != [t.completion_ids for t in a]


def test_a_run_does_not_depend_on_the_runs_before_it(nano):
    """GRPO reuses one engine for every step's rollouts. Where the previous run left the engine's step counter
    depends on when its last trajectories reported back (timing), and joiners are admitted on even steps; so each
    run counts its steps from 0, and the same weights and seed give the same tokens after any history."""
    model, tok, problems = nano
    from deepmath_lib.models import load_model, trained_model_path

    trained, _ = load_model(PROFILE, model_path=trained_model_path(PROFILE))
    kw = dict(sampling=PROFILE.train_sampling, seed=5, concurrency=10)
    fresh = TransformersBackend(trained, tok, max_batch=6)
    a = run_agent(fresh, problems[:16], PROFILE, **kw)
    fresh.close()
    used = TransformersBackend(trained, tok, max_batch=6)
    run_agent(used, problems[16:19], PROFILE, sampling=PROFILE.train_sampling, seed=3, concurrency=3)
    used.engine._step = 2 * used.engine._step + 1  # odd: as a late report at the end of a run can leave it
    b = run_agent(used, problems[:16], PROFILE, **kw)
    used.close()
    assert sum(len(t.calls) for t in a) >= 8  # trajectories left the batch for the tool and rejoined it
    assert [t.completion_ids for t in a] == [t.completion_ids for t in b]


def test_fast_mode_completes_every_trajectory(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=4, deterministic=False)
    trajs = run_agent(backend, problems[:10], PROFILE, sampling=PROFILE.train_sampling, seed=1, concurrency=7)
    backend.close()
    assert len(trajs) == 10 and all(t.finish_reason != "error" for t in trajs)
    for t in trajs:
        assert len(t.env_mask) == len(t.completion_ids)


def test_a_failing_forward_fails_its_requests_and_the_engine_recovers(nano):
    model, tok, problems = nano
    backend = TransformersBackend(model, tok, max_batch=4)
    prompt = prompt_ids_for(tok, problems[2], PROFILE, tool=False)
    real = backend.engine._forward
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("forward exploded")
        return real(*a, **k)

    backend.engine._forward = flaky
    with pytest.raises(RuntimeError, match="forward exploded"):
        _gen(backend, [(prompt, 10, Stop(), 0)])
    backend.engine._forward = real
    out = _gen(backend, [(prompt, 10, Stop(), 1)])[0]
    assert out.token_ids == _hf_greedy(model, tok, prompt, 10, backend.eos_ids)
    backend.close()


def test_bench_rollouts_reports_raw_concurrent_and_sequential(capsys):
    import json

    from deepmath_lib.cli import bench_rollouts_main as bench_main

    assert bench_main("nano", n=8, slots=4, seq_n=2, repeats=1, save=False, in_flight=6) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        res["concurrent_trajectories"] == 8 and res["sequential_trajectories"] == 2 and res["raw_rows"] == 4
    )
    assert res["slots"] == 4 and res["in_flight"] == 6
    assert res["raw_new_tokens_per_row"] == round(res["concurrent_model_tokens"] / 8)
    assert res["speedup"] == round(
        res["concurrent_model_tokens_per_s"] / res["sequential_model_tokens_per_s"], 2
    )
    assert res["fraction_of_raw"] == round(
        res["concurrent_model_tokens_per_s"] / res["raw_model_tokens_per_s"], 3
    )
    assert res["raw_one_row_rows"] == 1
    assert res["raw_one_row_new_tokens_per_row"] == res["raw_new_tokens_per_row"]
    assert res["raw_speedup"] == round(
        res["raw_model_tokens_per_s"] / res["raw_one_row_model_tokens_per_s"], 2
    )
    assert res["mode"] == "deterministic"
    # the same run with its sandboxes started before the clock: deterministic mode samples the same tokens
    assert res["presandboxed_trajectories"] == 8
    assert res["presandboxed_model_tokens"] == res["concurrent_model_tokens"]
    assert res["presandboxed_calls"] == res["concurrent_calls"]
    assert res["sandbox_share"] == round(
        1 - res["concurrent_model_tokens_per_s"] / res["presandboxed_model_tokens_per_s"], 3
    )
    assert 0 <= res["concurrent_sparse_seconds"] <= res["concurrent_seconds"]
    assert bench_main("nano", n=8, repeats=0, save=False) == 2
    assert "--rollout-repeats" in capsys.readouterr().err
    assert bench_main("nano", n=8, slots=4, in_flight=2, save=False) == 2  # fewer in flight than rows
    assert "--in-flight >= --slots" in capsys.readouterr().err
