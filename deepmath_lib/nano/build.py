"""The nano build: a tiny Qwen3-architecture causal LM, warm-started by SFT from a seed, cached by its recipe.

`build_nano` trains a freshly initialised `Qwen3ForCausalLM` (TRL `SFTTrainer`) on a mix of hand traces and tool
traces (`problems.py`), so the model sometimes calls the tool (and is then usually right) and more often computes by
hand (and often errs) -- the analogue of an untrained Qwen3. `RECIPE` (`recipe.py`) holds every setting; its hash names the cache
folder `<cache>/nano/<recipe-hash>/`, so the model is rebuilt only when the recipe changes. `load_nano` builds if
needed, then loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..paths import cache_dir
from ..profiles import SHIPPED_WEIGHTS, get_profile
from ..prompts import build_messages
from .problems import _raw_problems, hand_trace, tool_trace
from .recipe import RECIPE, RECIPE_VERSION  # noqa: F401  (RECIPE_VERSION: re-exported by the package)
from .tokenizer import build_tokenizer

# --------------------------------------------------------------------------------------------- SFT data


def _prompt_text(problem: str, tool: bool, tokenizer, profile) -> str:

    messages = build_messages(problem, profile, tool=tool)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def sft_examples(recipe: dict | None = None, tokenizer=None) -> list[dict]:
    """Pre-tokenized SFT rows `input_ids, labels` (-100 on the prompt and, if set, the executor output block)
    plus `kind, mode` (cot | hand | tool) for inspection."""

    recipe = recipe or RECIPE
    tok = tokenizer or build_tokenizer()
    profile = get_profile("nano")
    d = recipe["data"]
    rng = random.Random(f"nano-sft:{recipe['seed']}")
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    eos = [tok.eos_token_id] + enc("\n")
    rows = []
    for raw in _raw_problems(d["n_examples"], "train", recipe["seed"]):
        extra = rng.random() < d["extra_tool_fraction"]
        cot = not extra and rng.random() < d["cot_fraction"]
        use_tool = extra or (not cot and rng.random() < d["tool_fraction"])
        prompt = enc(_prompt_text(raw["problem"], not cot, tok, profile))
        ids, labels = list(prompt), [-100] * len(prompt)
        if use_tool:
            before, block, after = tool_trace(raw, rng, profile)
            b = enc(block)
            first, rest = enc(before)[:1], enc(before)[1:]
            pieces = [
                (first, not extra),
                (rest, True),
                (b, not d["mask_output_block"]),
                (enc(after) + eos, True),
            ]
        else:
            pieces = [(enc(hand_trace(raw, rng, d["hand_opening_fraction"])) + eos, True)]
        for piece, train in pieces:
            ids += piece
            labels += piece if train else [-100] * len(piece)
        rows.append(
            {
                "input_ids": ids,
                "labels": labels,
                "kind": raw["kind"],
                "mode": "cot" if cot else "tool-extra" if extra else "tool" if use_tool else "hand",
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- build / cache


def recipe_hash(recipe: dict | None = None) -> str:
    """Short hash of every recipe setting (names the cache directory)."""
    blob = json.dumps(recipe or RECIPE, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _default_dir() -> Path:

    return cache_dir() / "nano" / recipe_hash()


def shipped_dir() -> Path:
    """Where the package ships the nano base build (`deepmath_lib/weights/nano-base`)."""

    return SHIPPED_WEIGHTS / "nano-base"


def shipped_build() -> Path | None:
    """The shipped base build when it was made by this code's recipe (same hash), else None."""
    marker = shipped_dir() / COMPLETE
    try:
        return shipped_dir() if json.loads(marker.read_text())["recipe_hash"] == recipe_hash() else None
    except (OSError, ValueError, KeyError):
        return None


def ship(build: Path) -> Path:
    """Copy a complete build into the package (what `python -m deepmath_lib.nano --force --ship` does)."""
    dest = shipped_dir()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in sorted(Path(build).iterdir()):
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    return dest


COMPLETE = "COMPLETE"


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock (POSIX flock); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _train(out: Path, recipe: dict, verbose: bool) -> dict:
    """Tokenizer + model init + SFT, saved to `out`. Returns build stats."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import Qwen3Config, Qwen3ForCausalLM, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    t0 = time.time()
    seed = recipe["seed"]
    set_seed(seed)
    tok = build_tokenizer(recipe["tokenizer"]["number_digits"])
    rows = sft_examples(recipe, tok)
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    n_target = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
    ds = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    config = Qwen3Config(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        **recipe["model"],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    tr = recipe["train"]
    work = out / "_trainer"
    args = SFTConfig(
        output_dir=str(work),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        **tr,
    )

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if verbose and logs and "loss" in logs:
                print(
                    f"[nano] step {state.global_step}/{state.max_steps} loss {logs['loss']:.3f} "
                    f"({time.time() - t0:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )

    if verbose:
        print(
            f"[nano] building {recipe_hash(recipe)}: {n_params / 1e6:.2f}M params, {len(rows)} examples, "
            f"{n_tokens / 1e6:.2f}M tokens ({n_target / 1e6:.2f}M trained)",
            file=sys.stderr,
            flush=True,
        )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Progress()]
    )
    trainer.remove_callback(
        next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "PrinterCallback")
    )
    trainer.train()
    model = trainer.model
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.rmtree(work, ignore_errors=True)
    stats = {
        "recipe_hash": recipe_hash(recipe),
        "params": n_params,
        "examples": len(rows),
        "tokens": n_tokens,
        "trained_tokens": n_target,
        "steps": trainer.state.global_step,
        "build_seconds": round(time.time() - t0, 1),
        "final_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
        "torch_threads": torch.get_num_threads(),
    }
    (out / "build.json").write_text(json.dumps({"stats": stats, "recipe": recipe}, indent=2))
    return stats


def build_nano(force: bool = False, out_dir: str | Path | None = None, verbose: bool = True) -> Path:
    """Build (or reuse) the nano model + tokenizer; returns the directory holding them.

    The package ships the build of the current recipe (`shipped_build`): it is used unless `force` or `out_dir`.
    Default location `<cache>/nano/<recipe-hash>/`. A `COMPLETE` marker is written last; the build happens in a
    temporary sibling directory renamed into place under a lock, so a killed build is redone and concurrent
    builders never see a half-written model."""
    if out_dir is None and not force and shipped_build() is not None:
        return shipped_build()  # shipped with the package: no build at all
    final = Path(out_dir) if out_dir is not None else _default_dir()
    if not force and (final / COMPLETE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(final.parent / f".{final.name}.lock"):
        if not force and (final / COMPLETE).exists():  # another process built it while we waited
            return final
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            stats = _train(tmp, RECIPE, verbose)
            (tmp / COMPLETE).write_text(json.dumps(stats))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(f"[nano] built in {stats['build_seconds']}s -> {final}", file=sys.stderr, flush=True)
    return final


def load_nano(device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of the nano build, building it first if needed; the model is in eval mode."""
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    path = build_nano(verbose=True)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = Qwen3ForCausalLM.from_pretrained(str(path))
    model.to(device).eval()
    return model, tok
