"""The `nano` profile's model: a tiny Qwen3-architecture causal LM built by the repo from a seed.

Pieces, all deterministic:
- `generate_problems`: synthetic problems where computing helps (products, sums, modular powers, sums of
  sequences, counting, linear equations), exact integer answers, disjoint train/heldout/eval splits.
- `tool_trace` / `hand_trace`: solutions in the DeepMath format of the nano profile — a short trace that calls
  Python (`<tool_call>` ... `</tool_call>`, then the executor's output block, then `\\boxed{}`) and a longer one
  that works the computation by hand.
- `build_tokenizer`: character-level HF tokenizer with Qwen3-like special tokens and a ChatML chat template.
- `build_nano`: warm-start SFT (TRL `SFTTrainer`) of a freshly initialised tiny `Qwen3ForCausalLM` on a mix of
  hand traces and tool traces, so the model sometimes calls the tool (and is then usually right) and more often
  computes by hand (and often errs) — the analogue of an untrained Qwen3. Cached under
  `<cache>/nano/<recipe-hash>/`, rebuilt only when the recipe changes.
- `load_nano`: build if needed, then load.

`python -m deepmath_lib.nano [--force] [--measure N]` builds and optionally measures the behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

RECIPE_VERSION = 3

KINDS: tuple[str, ...] = ("mul", "add", "modpow", "sumsq", "arith", "count", "linear")
SPLITS: tuple[str, ...] = ("train", "heldout", "eval")

# Special tokens (Qwen3 spelling). `<tool_call>`/`</tool_call>` are added tokens that are not "special", as in
# Qwen3: decoding with skip_special_tokens=True keeps them, and generation can stop on the close tag's id.
IM_START, IM_END, PAD, UNK = "<|im_start|>", "<|im_end|>", "<|pad|>", "<|unk|>"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))  # printable ASCII + newline

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Everything that determines the built model; its hash names the cache directory.
RECIPE: dict[str, Any] = {
    "version": RECIPE_VERSION,
    "seed": 0,
    "tokenizer": {"number_digits": 3},
    "data": {
        "n_examples": 10000,
        "cot_fraction": 0.12,  # examples with the CoT prompt (always hand traces)
        "tool_fraction": 0.28,  # of the agent-prompt examples: tool traces (the rest: hand traces)
        # extra agent-prompt tool traces whose first token (the decision to call) is kept out of the loss: they
        # teach the tool path (copy the operands, copy the output into the box) without raising the call rate
        "extra_tool_fraction": 0.85,
        "mask_output_block": True,  # the executor's output block is context, not a training target
        "hand_opening_fraction": 0.25,  # hand traces opening with a sentence announcing the hand computation
        "fixed_forms": True,  # one snippet form per kind and one closing sentence after the output block
    },
    "model": {
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        # head size 32: the smallest vLLM's CPU attention accepts (32-512), so one tiny model serves every backend
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 1024,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    },
    "train": {
        "num_train_epochs": 5,
        "per_device_train_batch_size": 16,
        "learning_rate": 5e-3,
        "adam_beta2": 0.98,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "train_sampling_strategy": "group_by_length",
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "max_length": 512,
        "gradient_checkpointing": False,  # TRL turns it on by default: a waste on a model this small
    },
}


# --------------------------------------------------------------------------------------------- problems


def _split_of(text: str) -> str:
    """The split a problem text belongs to, by hashing it: 10% eval, 10% heldout, 80% train."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "eval" if h == 0 else "heldout" if h == 1 else "train"


def _make_problem(kind: str, rng: random.Random) -> dict[str, Any]:
    """One problem of a kind: text, exact answer and the parameters the traces need."""
    if kind == "mul":
        a, b = rng.randint(11, 31), rng.randint(11, 31)
        return {"problem": f"What is {a}*{b}?", "answer": a * b, "p": (a, b)}
    if kind == "add":
        a, b, c = (rng.randint(11, 99) for _ in range(3))
        return {"problem": f"What is {a}+{b}+{c}?", "answer": a + b + c, "p": (a, b, c)}
    if kind == "modpow":
        a, b, m = rng.randint(2, 30), rng.randint(10, 64), rng.randint(7, 99)
        return {"problem": f"What is {a}^{b} mod {m}?", "answer": pow(a, b, m), "p": (a, b, m)}
    if kind == "sumsq":
        n = rng.randint(4, 13)
        return {"problem": f"Find 1^2+2^2+...+{n}^2.", "answer": n * (n + 1) * (2 * n + 1) // 6, "p": (n,)}
    if kind == "arith":
        a, d, n = rng.randint(1, 20), rng.randint(2, 5), rng.randint(5, 15)
        last = a + (n - 1) * d
        return {
            "problem": f"Find {a}+{a + d}+{a + 2 * d}+...+{last}.",
            "answer": n * (a + last) // 2,
            "p": (a, d, n, last),
        }
    if kind == "count":
        a = rng.randint(2, 13)
        b = rng.choice([k for k in range(2, 14) if k != a and k % a and a % k])
        big_n = rng.randint(30, 99)
        lcm = a * b // math.gcd(a, b)
        ans = big_n // a + big_n // b - big_n // lcm
        return {
            "problem": f"How many n<={big_n} are divisible by {a} or {b}?",
            "answer": ans,
            "p": (big_n, a, b, lcm),
        }
    if kind == "linear":
        a, x, b = rng.randint(2, 9), rng.randint(2, 30), rng.randint(1, 60)
        c = a * x + b
        return {"problem": f"Solve {a}x + {b} = {c}.", "answer": x, "p": (a, b, c)}
    raise ValueError(f"unknown kind {kind!r}")


def _problem_stream(split: str, seed: int):
    """Endless deterministic stream of (kind, raw problem) dicts of one split, no repeated texts."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    rng = random.Random(f"nano-problems:{seed}:{split}")
    seen: set[str] = set()
    while True:
        kind = rng.choice(KINDS)
        raw = _make_problem(kind, rng)
        text = raw["problem"]
        if text in seen or _split_of(text) != split:
            continue
        seen.add(text)
        raw["kind"] = kind
        yield raw


def generate_problems(n: int, split: str = "train", seed: int = 0) -> list[dict]:
    """`n` synthetic problems of a split ("train", "heldout", "eval"): dicts `id, problem, answer (str), kind`.

    Deterministic; the splits are disjoint (a problem's split is a hash of its text); a smaller `n` gives a
    prefix of a larger one."""
    rows = []
    for i, raw in enumerate(_problem_stream(split, seed)):
        if i >= n:
            break
        rows.append(
            {
                "id": f"nano-{split}-{i}",
                "problem": raw["problem"],
                "answer": str(raw["answer"]),
                "kind": raw["kind"],
            }
        )
    return rows


def _raw_problems(n: int, split: str, seed: int) -> list[dict]:
    out = []
    for i, raw in enumerate(_problem_stream(split, seed)):
        if i >= n:
            break
        out.append(raw)
    return out


# --------------------------------------------------------------------------------------------- traces


def tool_snippet(raw: dict, rng: random.Random) -> str:
    """A short Python snippet that prints the problem's answer (one of a few variants per kind)."""
    kind, p = raw["kind"], raw["p"]
    if kind == "mul":
        a, b = p
        options = [f"print({a}*{b})", f"print({a} * {b})", f"x = {a}*{b}\nprint(x)"]
    elif kind == "add":
        a, b, c = p
        options = [f"print({a}+{b}+{c})", f"print({a} + {b} + {c})", f"print(sum([{a}, {b}, {c}]))"]
    elif kind == "modpow":
        a, b, m = p
        options = [f"print(pow({a}, {b}, {m}))", f"print(pow({a},{b},{m}))", f"print({a}**{b} % {m})"]
    elif kind == "sumsq":
        (n,) = p
        options = [
            f"print(sum(i*i for i in range(1, {n} + 1)))",
            f"print(sum(i**2 for i in range(1, {n} + 1)))",
        ]
    elif kind == "arith":
        a, d, n, last = p
        options = [f"print(sum(range({a}, {last} + 1, {d})))", f"print(sum({a} + {d}*k for k in range({n})))"]
    elif kind == "count":
        big_n, a, b, _ = p
        options = [
            f"print(len([n for n in range(1, {big_n} + 1) if n % {a} == 0 or n % {b} == 0]))",
            f"print(sum(1 for n in range(1, {big_n} + 1) if n%{a}==0 or n%{b}==0))",
        ]
    elif kind == "linear":
        a, b, c = p
        options = [f"print(({c} - {b}) // {a})", f"x = ({c}-{b})//{a}\nprint(x)"]
    else:  # pragma: no cover - kinds are closed
        raise ValueError(kind)
    # One snippet form per kind (the first): with whole-number tokens the operands then sit at a fixed offset
    # from where the code needs them, so a tiny model learns to copy them within its few-minute build.
    return options[0] if RECIPE["data"].get("fixed_forms", True) else rng.choice(options)


def _modpow_hand(a: int, b: int, m: int) -> str:
    squares = [a % m]
    while (1 << len(squares)) <= b:
        squares.append(squares[-1] * squares[-1] % m)
    bits = [k for k in range(len(squares)) if b >> k & 1]
    steps, acc = [], None
    for k in reversed(bits):
        v = squares[k]
        if acc is None:
            acc = v
            continue
        steps.append(f"{acc}*{v}={acc * v}={acc * v % m}")
        acc = acc * v % m
    parts = "+".join(str(1 << k) for k in reversed(bits))
    text = f"Squares mod {m}: {', '.join(map(str, squares))}. {b}={parts}."
    if steps:
        text += " " + ", ".join(steps) + "."
    return text


def hand_work(raw: dict) -> str:
    """The visible by-hand working of a problem (correct arithmetic), without the final box."""
    kind, p = raw["kind"], raw["p"]
    if kind == "mul":
        a, b = p
        digits = str(b)
        terms = [int(ch) * 10 ** (len(digits) - 1 - i) for i, ch in enumerate(digits) if ch != "0"]
        if len(terms) == 1:
            return f"{a}*{b} = {a * b}."
        return (
            f"{a}*{b} = "
            + " + ".join(f"{a}*{t}" for t in terms)
            + " = "
            + " + ".join(str(a * t) for t in terms)
            + f" = {a * b}."
        )
    if kind == "add":
        a, b, c = p
        return f"{a}+{b} = {a + b}, {a + b}+{c} = {a + b + c}."
    if kind == "modpow":
        return _modpow_hand(*p)
    if kind == "sumsq":
        (n,) = p
        prod = n * (n + 1) * (2 * n + 1)
        return f"Use n(n+1)(2n+1)/6 with n={n}: {n}*{n + 1}*{2 * n + 1}/6 = {prod}/6 = {prod // 6}."
    if kind == "arith":
        a, d, n, last = p
        return (
            f"There are ({last}-{a})/{d}+1 = {n} terms. Pairing them: "
            f"{n}*({a}+{last})/2 = {n}*{a + last}/2 = {n * (a + last) // 2}."
        )
    if kind == "count":
        big_n, a, b, lcm = p
        qa, qb, ql = big_n // a, big_n // b, big_n // lcm
        return (
            f"Multiples of {a}: {qa}, of {b}: {qb}, of both ({lcm}): {ql}. "
            f"Inclusion-exclusion: {qa}+{qb}-{ql} = {qa + qb - ql}."
        )
    if kind == "linear":
        a, b, c = p
        return f"{a}x = {c}-{b} = {c - b}, so x = {c - b}/{a} = {(c - b) // a}."
    raise ValueError(kind)  # pragma: no cover


def tool_trace(raw: dict, rng: random.Random, profile: Any = None) -> tuple[str, str, str]:
    """(model text before the output block, the output block, model text after it) of a tool trace."""
    from .profiles import get_profile

    profile = profile or get_profile("nano")
    code = tool_snippet(raw, rng)
    before = profile.call_open + code + "\n" + profile.call_close
    block = profile.output_template.format(output=str(raw["answer"]))
    forms = ["The answer is \\boxed{{{a}}}.", "\\boxed{{{a}}}", "So the answer is \\boxed{{{a}}}."]
    after = forms[0] if RECIPE["data"].get("fixed_forms", True) else rng.choice(forms)
    return before, block, after.format(a=raw["answer"])


HAND_OPENINGS = (
    "Let me work it out by hand.\n",
    "I will compute this step by step.\n",
    "Working by hand:\n",
    "Compute it directly, step by step.\n",
)


def hand_trace(raw: dict, rng: random.Random, opening_fraction: float = 0.25) -> str:
    """A by-hand trace: (sometimes an opening sentence,) visible working, then the boxed answer."""
    start = rng.choice(HAND_OPENINGS) if rng.random() < opening_fraction else ""
    end = rng.choice(["\nThe answer is \\boxed{{{a}}}.", "\n\\boxed{{{a}}}", " So \\boxed{{{a}}}."])
    return start + hand_work(raw) + end.format(a=raw["answer"])


# --------------------------------------------------------------------------------------------- tokenizer


def build_tokenizer(
    number_digits: int | None = None, vocab_size: int | None = None, model_max_length: int | None = None
):
    """Character-level `PreTrainedTokenizerFast` with ChatML special tokens and a chat template, where runs of up to
    `number_digits` digits are single tokens (default from the recipe; 0 or 1 = plain characters). `vocab_size` pads
    the vocabulary with filler tokens to exactly that many ids (any id a model of that size samples decodes).

    Whole-number tokens make copying a number (from the problem into code, from the executor's output into the
    box) a one-token attention, which a tiny model learns in minutes; computing by hand stays a guess per token.
    Ids: 0 `<|pad|>`, 1 `<|unk|>`, 2 `<|im_start|>`, 3 `<|im_end|>` (eos), then the characters, then the numbers,
    then `<tool_call>` and `</tool_call>` (single added tokens)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    digits = RECIPE["tokenizer"]["number_digits"] if number_digits is None else number_digits
    specials = [PAD, UNK, IM_START, IM_END]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in CHARSET:
        vocab[ch] = len(vocab)
    for width in range(2, digits + 1):
        for k in range(10**width):
            vocab[str(k).zfill(width)] = len(vocab)
    if vocab_size is not None:
        if len(vocab) + 2 > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is below the {len(vocab) + 2} base tokens")
        while len(vocab) < vocab_size - 2:  # the two tool tags come last
            vocab[f"<|x{len(vocab)}|>"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    pattern = rf"\d{{1,{digits}}}|\D" if digits > 1 else r"[\s\S]"  # Oniguruma has no (?s)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in (TOOL_OPEN, TOOL_CLOSE)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        padding_side="left",
        model_max_length=model_max_length or RECIPE["model"]["max_position_embeddings"],
    )
    tok.chat_template = CHAT_TEMPLATE
    if vocab_size is not None and len(tok) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(tok)} ids, expected {vocab_size}")
    return tok


# --------------------------------------------------------------------------------------------- SFT data


def _prompt_text(problem: str, tool: bool, tokenizer, profile) -> str:
    from .prompts import build_messages

    messages = build_messages(problem, profile, tool=tool)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def sft_examples(recipe: dict | None = None, tokenizer=None) -> list[dict]:
    """Pre-tokenized SFT rows `input_ids, labels` (-100 on the prompt and, if set, the executor output block)
    plus `kind, mode` (cot | hand | tool) for inspection."""
    from .profiles import get_profile

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
    from .paths import cache_dir

    return cache_dir() / "nano" / recipe_hash()


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

    Default location `<cache>/nano/<recipe-hash>/`. A `COMPLETE` marker is written last; the build happens in a
    temporary sibling directory renamed into place under a lock, so a killed build is redone and concurrent
    builders never see a half-written model."""
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


# --------------------------------------------------------------------------------------------- measurement


def _exec_snippet(code: str, timeout: float = 2.0) -> str:
    """Run a snippet with plain exec (measurement only; the agent uses the Sandbox). Returns stdout or an error."""
    import io

    buf = io.StringIO()

    def _alarm(signum, frame):
        raise TimeoutError("timed out")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(buf):
            exec(code, {})
        out = buf.getvalue()
    except BaseException as exc:  # noqa: BLE001 - report any failure as the output
        out = buf.getvalue() + f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return out.rstrip("\n")[:200]


def sample_traces(
    model,
    tok,
    problems: list[dict],
    tool: bool = True,
    temperature: float = 1.0,
    top_k: int = 20,
    max_new_tokens: int = 256,
    max_calls: int = 3,
    seed: int = 0,
    batch_size: int = 64,
) -> list[dict]:
    """Quick batched agent loop for measuring the build: generate until `</tool_call>` or eos, exec the snippet,
    append the output block's tokens, continue. Returns per problem `text, calls, answer, correct, model_tokens`."""
    import torch

    from .profiles import get_profile

    profile = get_profile("nano")
    close_id = tok.convert_tokens_to_ids(TOOL_CLOSE)
    eos_id = tok.eos_token_id
    torch.manual_seed(seed)
    states = []
    for pr in problems:
        prompt = tok.encode(_prompt_text(pr["problem"], tool, tok, profile), add_special_tokens=False)
        states.append({"prompt": prompt, "comp": [], "model_tokens": 0, "calls": 0, "done": False, "pr": pr})
    stops = [eos_id, close_id] if tool else [eos_id]
    while True:
        active = [s for s in states if not s["done"]]
        if not active:
            break
        for i in range(0, len(active), batch_size):
            chunk = active[i : i + batch_size]
            seqs = [s["prompt"] + s["comp"] for s in chunk]
            width = max(map(len, seqs))
            ids = torch.tensor([[tok.pad_token_id] * (width - len(q)) + q for q in seqs])
            mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs])
            budget = max(max_new_tokens - s["model_tokens"] for s in chunk)
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=True,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=1.0,
                    max_new_tokens=budget,
                    eos_token_id=stops,
                    pad_token_id=tok.pad_token_id,
                )
            for s, row in zip(chunk, out[:, width:].tolist(), strict=True):
                new = []
                for t in row:
                    new.append(t)
                    if t in stops:
                        break
                new = new[: max_new_tokens - s["model_tokens"]]
                s["comp"] += new
                s["model_tokens"] += len(new)
                if not new or new[-1] != close_id or s["model_tokens"] >= max_new_tokens:
                    s["done"] = True
                    continue
                s["calls"] += 1
                text = tok.decode(new, skip_special_tokens=False)
                start = text.rfind(TOOL_OPEN)
                code = text[start + len(TOOL_OPEN) : text.rfind(TOOL_CLOSE)].strip("\n") if start >= 0 else ""
                output = _exec_snippet(code) if code else "error: no code"
                s["comp"] += tok.encode(
                    profile.output_template.format(output=output), add_special_tokens=False
                )
                if s["calls"] >= max_calls:
                    s["done"] = True
    results = []
    for s in states:
        text = tok.decode(s["comp"], skip_special_tokens=True)
        ans = _last_boxed(text)
        results.append(
            {
                "id": s["pr"]["id"],
                "kind": s["pr"]["kind"],
                "text": text,
                "calls": s["calls"],
                "answer": ans,
                "correct": ans is not None and ans.strip() == s["pr"]["answer"],
                "model_tokens": s["model_tokens"],
            }
        )
    return results


def _last_boxed(text: str) -> str | None:
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    j = text.find("}", i)
    return text[i + 7 : j] if j >= 0 else None


def summarize(results: list[dict]) -> dict:
    """Code-use rate, accuracy of tool / hand traces and their mean model-token lengths."""
    tool = [r for r in results if r["calls"] > 0]
    hand = [r for r in results if r["calls"] == 0]

    def acc(rs):
        return round(sum(r["correct"] for r in rs) / len(rs), 3) if rs else None

    def mlen(rs):
        return round(sum(r["model_tokens"] for r in rs) / len(rs), 1) if rs else None

    return {
        "n": len(results),
        "code_use_rate": round(len(tool) / max(len(results), 1), 3),
        "accuracy": acc(results),
        "boxed_rate": round(sum(r["answer"] is not None for r in results) / max(len(results), 1), 3),
        "tool_n": len(tool),
        "tool_accuracy": acc(tool),
        "hand_accuracy": acc(hand),
        "tool_mean_tokens": mlen(tool),
        "hand_mean_tokens": mlen(hand),
    }


def measure(n: int = 100, temperatures: tuple[float, ...] = (1.0, 0.6), seed: int = 0) -> dict:
    """Sample the build on `n` heldout problems (agent and CoT prompts) and summarise its behaviour."""
    model, tok = load_nano()
    problems = generate_problems(n, split="heldout")
    report = {}
    for t in temperatures:
        t0 = time.time()
        agent = summarize(sample_traces(model, tok, problems, tool=True, temperature=t, seed=seed))
        cot = summarize(sample_traces(model, tok, problems, tool=False, temperature=t, seed=seed))
        report[f"T={t}"] = {"agent": agent, "cot": cot, "seconds": round(time.time() - t0, 1)}
    return report


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Build (and optionally measure) the nano model.")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--measure", type=int, default=0, help="heldout problems to sample (0: skip)")
    a = ap.parse_args()
    print(build_nano(force=a.force))
    if a.measure:
        print(json.dumps(measure(a.measure), indent=2))
