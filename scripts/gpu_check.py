"""A prepared check of the paper-scale GRPO code path on one CUDA GPU, with no internet and no vLLM.

What it does, each part guarded (a failure is reported under "errors" and the other parts still run):

1. builds a random-weight model with Qwen3-4B-Thinking-2507's shapes (bf16, on the GPU; nothing is downloaded) and a
   local character-level tokenizer padded to the model's vocabulary (151,936 ids), with Qwen3's chat tokens, the
   `<tool_call>` tags and a chat template;
2. `thread`: runs `model.generate` from a raw `threading.Thread`, then our agent loop
   (`run_agent` -> `TransformersBackend`, which generates via `asyncio.to_thread`) on a couple of prompts;
   `sandbox`: one snippet through our Sandbox (its protection report goes into the JSON);
3. `grpo`: a few GRPO steps (default 2) through `deepmath_lib.grpo.build_trainer` with the `paper` profile
   (LoRA r32 / alpha 16 / rsLoRA on all linear layers, gradient checkpointing, bf16), backend "transformers",
   rollouts by our agent loop limited to `--max-tokens` generated tokens. Half of the trajectories (even tags)
   get a scripted first segment, a code call, so the sandbox, the env mask and non-zero advantages are
   exercised even with random weights (`--no-scripted-call` turns that off);
4. `paper_shape`: one forward+backward of the LoRA policy through TRL's own loss (`compute_loss`, with the
   reference log-probs when beta > 0) on the paper's per-device micro-batch (4 x (1,024 prompt + 5,000
   completion) tokens by default) and reports the peak GPU memory.

Progress goes to stderr; stdout gets exactly one JSON line at the end. Exit code 0 when every part passed.

On the GPU machine (Python 3.12 with torch, transformers, accelerate, peft, ... but no trl/datasets/math-verify),
from the repository root, with the wheels of `.whl/` (trl, datasets, dill, multiprocess, math-verify,
latex2sympy2_extended, antlr4-python3-runtime):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && python3 scripts/gpu_check.py

`.whl/` is ignored by git (`/.whl/` in .git/info/exclude), so a copy of the work tree must carry it explicitly.
Without CUDA the script stops at once with an error unless `--tiny` (or `--device cpu`) is given.

Here (CPU, a tiny model of the same architecture, float32, a few tokens): `python scripts/gpu_check.py --tiny`
(tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRL_EXPERIMENTAL_SILENCE": "1",
}.items():
    os.environ.setdefault(_k, _v)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's deepmath_lib without installing it

# Qwen3-4B-Thinking-2507's config.json (the shapes that matter for memory and speed).
QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
    rope_theta=5_000_000.0,
    max_position_embeddings=262144,
    rms_norm_eps=1e-6,
)
TINY = dict(  # the same architecture, small enough for a CPU test
    QWEN3_4B,
    vocab_size=2048,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=8192,
)
SCRIPTED_CALL = "<tool_call>\nprint(6*7)\n</tool_call>"


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / 2**30, 2)


# --------------------------------------------------------------------------------------------- model + tokenizer


def build_tokenizer(vocab_size: int):
    """nano's character-level tokenizer (digits as characters) padded with filler tokens to exactly `vocab_size` ids,
    so any id the model samples decodes; `<tool_call>`/`</tool_call>` are added tokens that are not special, as in
    Qwen3."""
    from deepmath_lib.nano import build_tokenizer as nano_tokenizer

    return nano_tokenizer(number_digits=1, vocab_size=vocab_size, model_max_length=262144)


def build_model(shapes: dict, tok, device: str, dtype):
    """A random-weight Qwen3ForCausalLM of the given shapes, built directly on `device` in `dtype`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        **shapes,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    with contextlib.suppress(Exception):
        model.config.dtype = dtype
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval()


# --------------------------------------------------------------------------------------------- backends


def scripted_backend_class():
    """A TransformersBackend whose first segment of every even-tagged trajectory is a scripted code call (no model
    call for it); everything else is generated by the model. Random weights never write a call themselves."""
    from deepmath_lib.backends import GenOutput, TransformersBackend

    class ScriptedFirstCall(TransformersBackend):
        def __init__(self, model, tokenizer, max_batch: int = 256):
            super().__init__(model, tokenizer, max_batch)
            self.header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
            self.call_ids = tokenizer.encode(SCRIPTED_CALL, add_special_tokens=False)
            self.scripted = 0

        async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
            if tag % 2 == 0 and ids[-len(self.header) :] == self.header:  # an even trajectory's first segment
                self.scripted += 1
                return GenOutput(list(self.call_ids[:max_new_tokens]), "stop")
            return await super().generate(ids, max_new_tokens, sampling, stop, tag)

    return ScriptedFirstCall


# --------------------------------------------------------------------------------------------- parts


def part_thread(model, tok, profile, max_tokens: int, gen_batch: int, report: dict) -> None:
    """`model.generate` from a worker thread: raw threading.Thread, then our agent loop (asyncio.to_thread)."""
    import torch

    from deepmath_lib.agent import prompt_ids_for, run_agent
    from deepmath_lib.backends import TransformersBackend
    from deepmath_lib.profiles import Sampling

    device = next(model.parameters()).device
    ids = prompt_ids_for(tok, "What is 248*365?", profile, tool=True)
    report["prompt_tokens"] = len(ids)
    box: dict[str, Any] = {}

    def target():
        try:
            x = torch.tensor([ids] * gen_batch, device=device)
            with torch.inference_mode():
                t0 = time.perf_counter()
                out = model.generate(
                    input_ids=x,
                    attention_mask=torch.ones_like(x),
                    max_new_tokens=max_tokens,
                    min_new_tokens=max_tokens,
                    do_sample=True,
                    temperature=1.0,
                    top_p=0.95,
                    top_k=50,
                    pad_token_id=tok.pad_token_id,
                )
                if device.type == "cuda":
                    torch.cuda.synchronize()
                box["seconds"] = time.perf_counter() - t0
            box["shape"] = tuple(out.shape)
            box["text"] = tok.decode(out[0, len(ids) :].tolist(), skip_special_tokens=False)
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    log(f"thread: raw generate, batch {gen_batch} x {max_tokens} new tokens, prompt {len(ids)} tokens")
    th = threading.Thread(target=target, name="generate-worker")
    th.start()
    th.join()
    if "error" in box:
        raise box["error"]
    if box["shape"] != (gen_batch, len(ids) + max_tokens):
        raise RuntimeError(f"generate returned shape {box['shape']}")
    new_tokens = gen_batch * max_tokens
    report["generate_tokens_per_s"] = round(new_tokens / box["seconds"], 1)
    report["generate_batch"] = gen_batch
    log(f"thread: {new_tokens} tokens in {box['seconds']:.1f}s ({report['generate_tokens_per_s']} tok/s)")

    backend = TransformersBackend(model, tok, max_batch=64)
    sampling = Sampling(temperature=1.0, top_p=0.95, top_k=50, max_model_tokens=max_tokens)
    t0 = time.perf_counter()
    trajs = run_agent(backend, ["What is 248*365?", "What is 7^222 mod 1000?"], profile, sampling=sampling)
    errors = [t.error for t in trajs if t.finish_reason == "error"]
    if errors:
        raise RuntimeError(f"run_agent trajectories failed: {errors}")
    report["agent_model_tokens"] = [t.model_tokens for t in trajs]
    log(
        f"thread: run_agent ok in {time.perf_counter() - t0:.1f}s, model tokens {report['agent_model_tokens']}"
    )
    report["thread_generate_ok"] = True


def part_sandbox(profile, report: dict) -> None:
    from deepmath_lib.agent import default_sandbox_factory

    sb = default_sandbox_factory(profile)()
    try:
        res = sb.run("print(6*7)")
        report["sandbox_features"] = sb.features
    finally:
        sb.close()
    if res.error is not None or res.model_text().strip() != "42":
        raise RuntimeError(f"sandbox ran print(6*7) -> {res.model_text()!r} (error {res.error!r})")
    report["sandbox_ok"] = True
    log(f"sandbox: ok, features {report['sandbox_features']}")


def part_grpo(model, tok, profile, args, report: dict):
    import torch
    from transformers import TrainerCallback

    from deepmath_lib.grpo import build_trainer
    from deepmath_lib.nano import generate_problems

    cuda = torch.cuda.is_available()
    problems = generate_problems(64, split="train", seed=0)
    backend = None
    if args.scripted_call:
        backend = scripted_backend_class()(model, tok, max_batch=256)
    out = Path(args.output_dir)
    log(f"grpo: building the trainer (output {out})")
    trainer = build_trainer(
        profile, model, tok, problems, out, steps=args.steps, progress=False, backend=backend
    )
    policy = trainer.accelerator.unwrap_model(trainer.model)
    if backend is not None:  # generate with the LoRA-wrapped policy the trainer optimises
        backend.model = policy
    report["lora_trainable_params_m"] = round(
        sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e6, 2
    )
    report["grpo_config"] = {
        k: getattr(trainer.args, k)
        for k in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_generations",
            "gradient_checkpointing",
            "bf16",
            "beta",
            "loss_type",
            "max_completion_length",
        )
    }
    log(f"grpo: {report['grpo_config']}, LoRA params {report['lora_trainable_params_m']}M")

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            now = time.perf_counter()
            times.append(round(now - self.t, 2))
            self.t = now
            mem = f", peak {gib(torch.cuda.max_memory_allocated())} GiB" if cuda else ""
            log(f"grpo: step {state.global_step} done in {times[-1]}s{mem}")

    trainer.add_callback(StepTimer())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    report["step_seconds"] = times
    try:
        trainer.train()
    finally:
        if cuda:
            report["peak_mem_gib_grpo"] = gib(torch.cuda.max_memory_allocated())
        rows = getattr(getattr(trainer, "metrics_log", None), "rows", [])
        report["grpo_metrics"] = [
            {k: r.get(k) for k in ("step", "reward", "reward_code", "mean_model_tokens", "loss")}
            for r in rows
        ]
        if backend is not None:
            report["scripted_calls"] = backend.scripted
    if len(times) != args.steps:
        raise RuntimeError(f"{len(times)} optimizer steps ran, expected {args.steps}")
    report["grpo_steps_ok"] = True
    code = [r.get("reward_code") or 0.0 for r in report["grpo_metrics"]]
    if args.scripted_call and not any(c > 0 for c in code):
        report["errors"]["grpo_tool_path"] = f"scripted code calls gave no code reward: {code}"

    return trainer


def part_paper_shape(trainer, model, batch: int, prompt_len: int, completion_len: int, report: dict) -> None:
    """One forward+backward at the paper's micro-batch shape through TRL's loss (reference log-probs included when
    beta > 0); without a trainer, a plain causal-LM loss on a LoRA-wrapped model."""
    import torch

    cuda = torch.cuda.is_available()
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    report["paper_shape"] = {"batch": batch, "prompt": prompt_len, "completion": completion_len}
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt_ids = torch.randint(10, vocab, (batch, prompt_len), generator=g).to(device)
    completion_ids = torch.randint(10, vocab, (batch, completion_len), generator=g).to(device)
    t0 = time.perf_counter()
    if trainer is not None:
        policy = trainer.model
        policy.train()
        tool_mask = torch.ones(batch, completion_len, dtype=torch.long, device=device)
        tool_mask[:, completion_len // 3 : completion_len // 3 + completion_len // 10] = (
            0  # an executor block
        )
        inputs: dict[str, Any] = {
            "prompt_ids": prompt_ids,
            "prompt_mask": torch.ones_like(prompt_ids),
            "completion_ids": completion_ids,
            "completion_mask": torch.ones_like(completion_ids),
            "tool_mask": tool_mask,
            "advantages": torch.tensor([(-1.0) ** i for i in range(batch)], device=device),
            "num_items_in_batch": tool_mask.sum(),
        }
        ctx = getattr(trainer, "compute_loss_context_manager", contextlib.nullcontext)
        if trainer.beta != 0.0:
            unwrapped = trainer.accelerator.unwrap_model(policy)
            ids = torch.cat([prompt_ids, completion_ids], dim=1)
            with torch.no_grad(), unwrapped.disable_adapter(), ctx():
                ref = trainer._get_per_token_logps_and_entropies(
                    policy, ids, torch.ones_like(ids), completion_len
                )[0]
            inputs["ref_per_token_logps"] = ref
        trainer.current_gradient_accumulation_steps = 1
        with ctx():
            loss = trainer.compute_loss(policy, inputs)
        trainer.accelerator.backward(loss)
        n_grads = sum(p.grad is not None for p in policy.parameters() if p.requires_grad)
        policy.zero_grad(set_to_none=True)
    else:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            model,
            LoraConfig(
                r=32, lora_alpha=16, use_rslora=True, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
        policy.gradient_checkpointing_enable()
        policy.enable_input_require_grads()
        policy.train()
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        loss = policy(input_ids=ids, labels=ids).loss
        loss.backward()
        n_grads = sum(p.grad is not None for p in policy.parameters() if p.requires_grad)
        policy.zero_grad(set_to_none=True)
        report["paper_shape"]["path"] = "plain LoRA causal-LM loss (no trainer)"
    if cuda:
        torch.cuda.synchronize()
        report["peak_mem_gib_paper_shape"] = gib(torch.cuda.max_memory_allocated())
    report["paper_shape"]["seconds"] = round(time.perf_counter() - t0, 2)
    report["paper_shape"]["loss"] = float(loss.detach().float().cpu())
    if not n_grads:
        raise RuntimeError("no LoRA parameter received a gradient")
    log(f"paper_shape: {report['paper_shape']}, peak {report.get('peak_mem_gib_paper_shape')} GiB")


# --------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny model of the same architecture, float32, CPU")
    ap.add_argument("--steps", type=int, default=2, help="GRPO optimizer steps")
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="generated tokens per rollout (256; tiny 24)"
    )
    ap.add_argument("--gen-batch", type=int, default=None, help="batch of the raw generate (16; tiny 2)")
    ap.add_argument(
        "--paper-batch", type=int, default=None, help="sequences (the profile's per_device_batch)"
    )
    ap.add_argument("--paper-prompt", type=int, default=None, help="prompt tokens (1024; tiny 16)")
    ap.add_argument("--paper-completion", type=int, default=None, help="completion tokens (5000; tiny 48)")
    ap.add_argument("--no-scripted-call", dest="scripted_call", action="store_false")
    ap.add_argument("--output-dir", default=None, help="GRPO output folder (default: a temporary one)")
    ap.add_argument(
        "--device", default=None, help="cuda or cpu (default: cuda when available, cpu with --tiny)"
    )
    args = ap.parse_args(argv)
    tiny = args.tiny
    args.max_tokens = args.max_tokens or (24 if tiny else 256)
    args.gen_batch = args.gen_batch or (2 if tiny else 16)
    args.paper_prompt = args.paper_prompt or (16 if tiny else 1024)
    args.paper_completion = args.paper_completion or (48 if tiny else 5000)
    return args


def check_profile(args):
    """The paper profile as the check runs it: transformers backend (no vLLM), rollouts of `--max-tokens`."""
    import dataclasses

    from deepmath_lib.profiles import Profile, Sampling, get_profile

    base = get_profile("paper")
    s = base.train_sampling
    overrides: dict[str, Any] = dict(
        backend="transformers",
        train_sampling=Sampling(s.temperature, s.top_p, s.top_k, args.max_tokens),
        save_steps=10_000,
        train_steps=args.steps,
        temperature_steps=max(args.steps, 1),
        prompt="ours",  # the check runs offline; the original's prompt would need its files
    )
    if args.tiny:  # short prompts: the char-level tokenizer makes the 4-shot prompt ~1.6k tokens
        overrides.update(n_shots=0, system_prompt=False, prompts_per_step=2, num_generations=2)
    known = {f.name for f in dataclasses.fields(Profile)}
    return get_profile("paper", **{k: v for k, v in overrides.items() if k in known})


def run(args) -> dict:
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "cuda": False,
        "device_name": None,
        "torch": None,
        "transformers": None,
        "trl": None,
        "params_b": None,
        "grpo_steps_ok": False,
        "step_seconds": [],
        "peak_mem_gib_grpo": None,
        "peak_mem_gib_paper_shape": None,
        "thread_generate_ok": False,
        "generate_tokens_per_s": None,
        "sandbox_ok": False,
        "tiny": bool(args.tiny),
        "errors": {},
    }
    errors: dict[str, str] = report["errors"]

    def guarded(name: str, fn, *a):
        try:
            return fn(*a)
        except BaseException as exc:  # noqa: BLE001 - every failure is data for the report
            if isinstance(exc, KeyboardInterrupt):
                raise
            errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            log(f"{name}: FAILED\n{traceback.format_exc()}")
            return None

    import torch

    report["torch"] = torch.__version__
    report["cuda"] = torch.cuda.is_available()
    if report["cuda"]:
        report["device_name"] = torch.cuda.get_device_name(0)
    for mod in ("transformers", "trl", "peft", "accelerate", "datasets"):
        with contextlib.suppress(Exception):
            report[mod] = __import__(mod).__version__
    device = args.device or ("cpu" if args.tiny or not report["cuda"] else "cuda")
    if device == "cpu" and not args.tiny and args.device is None:
        errors["cuda"] = "no CUDA device: run with --tiny for the CPU check (or --device cpu to insist)"
        report["total_seconds"] = round(time.perf_counter() - t_start, 1)
        return report
    dtype = torch.float32 if args.tiny or device == "cpu" else torch.bfloat16
    report["device"] = device
    log(f"torch {report['torch']}, cuda {report['cuda']} ({report['device_name']}), device {device}, {dtype}")

    profile = guarded("profile", check_profile, args)
    shapes = TINY if args.tiny else QWEN3_4B
    tok = guarded("tokenizer", build_tokenizer, shapes["vocab_size"])
    model = None
    if tok is not None:
        t0 = time.perf_counter()
        model = guarded("model", build_model, shapes, tok, device, dtype)
        if model is not None:
            report["params"] = sum(p.numel() for p in model.parameters())
            report["params_b"] = round(report["params"] / 1e9, 3)
            report["model_build_seconds"] = round(time.perf_counter() - t0, 1)
            if report["cuda"] and device == "cuda":
                report["mem_gib_weights"] = gib(torch.cuda.memory_allocated())
            log(f"model: {report['params_b']}B params in {report['model_build_seconds']}s")
    if model is None or profile is None:
        report["total_seconds"] = round(time.perf_counter() - t_start, 1)
        return report

    tmp = None
    if args.output_dir is None:
        tmp = args.output_dir = tempfile.mkdtemp(prefix="gpu_check_")
    guarded("thread", part_thread, model, tok, profile, args.max_tokens, args.gen_batch, report)
    guarded("sandbox", part_sandbox, profile, report)
    trainer = guarded("grpo", part_grpo, model, tok, profile, args, report)
    batch = args.paper_batch or getattr(profile, "per_device_batch", None) or 4
    guarded(
        "paper_shape",
        part_paper_shape,
        trainer,
        model,
        batch,
        args.paper_prompt,
        args.paper_completion,
        report,
    )
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    # stdout is for the one JSON line: everything else (TRL's log lines, subprocesses) goes to stderr
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            report = run(args)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        report = {"errors": {"main": f"{type(exc).__name__}: {exc}"}}
        log(traceback.format_exc())
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    ok = not report.get("errors") and report.get("grpo_steps_ok") and report.get("thread_generate_ok")
    print(json.dumps(report, default=str), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
