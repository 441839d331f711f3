"""Why the repo has its own continuous batching: transformers 5's `generate_batch` (continuous batching over a paged
cache) against plain batched `generate`, same nano model, same prompts, greedy, every row the same number of new
tokens, in one run. Stores `experiments/generate_batch_check/results/generate_batch_nano.json` (its `block.py` puts it on the
benchmarks page).

    python -m experiments.generate_batch_check.generate_batch_check [--rows 64] [--new 57]
"""

from __future__ import annotations

import argparse
import json
import time

from deepmath_lib.agent import prompt_ids_for
from deepmath_lib.bench import conditions, save
from deepmath_lib.bench.rollouts import _problems, _raw_transformers
from deepmath_lib.models import load_model, trained_model_path
from deepmath_lib.profiles import get_profile
from experiments.common import results_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--new", type=int, default=57, help="new tokens per row")
    a = ap.parse_args()
    if a.rows < 1 or a.new < 1:
        ap.error(f"--rows and --new must be positive, got {a.rows} and {a.new}")
    from transformers import GenerationConfig

    cond = conditions()
    prof = get_profile("nano")
    model, tok = load_model(prof, model_path=trained_model_path(prof), device="cpu")
    prompts = [prompt_ids_for(tok, p, prof, True) for p in _problems(prof, a.rows)]
    _raw_transformers(model, tok, prompts[:4], 4, prof.eval_sampling)  # warm-up
    plain = _raw_transformers(model, tok, prompts, a.new, prof.eval_sampling)
    cfg = GenerationConfig(
        max_new_tokens=a.new,
        do_sample=False,
        eos_token_id=-1,  # every row runs `new` tokens, as in plain generate above
        pad_token_id=tok.pad_token_id,
        max_batch_tokens=4096,
        num_blocks=256,
        block_size=64,
    )
    t0 = time.perf_counter()
    out = model.generate_batch(inputs=prompts, generation_config=cfg, progress_bar=False)
    dt = time.perf_counter() - t0
    tokens = sum(len(o.generated_tokens) for o in out.values())
    res = {
        "bench": "generate_batch",
        "profile": "nano",
        "rows": a.rows,
        "new_tokens_per_row": a.new,
        "generate_model_tokens_per_s": round(plain, 1),
        "generate_batch_model_tokens": tokens,
        "generate_batch_model_tokens_per_s": round(tokens / dt, 1),
    }
    print(f"stored {save('generate_batch_nano', res, results_dir('generate_batch_check'), cond=cond)}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
