"""The benchmarks page's line on transformers' own continuous batching, from this experiment's results."""

from __future__ import annotations

import json

from deepmath_lib.report import conditions_text
from experiments.common import results_dir


def render() -> str:
    gb = json.loads((results_dir("generate_batch_check") / "generate_batch_nano.json").read_text())
    return (
        "`python -m experiments.generate_batch_check.generate_batch_check` — transformers' own continuous batching "
        f"(`generate_batch`, a paged cache) against plain batched `generate`, nano, the same {gb['rows']} prompts, "
        f"greedy, {gb['new_tokens_per_row']} new tokens per row: {gb['generate_batch_model_tokens_per_s']:,.0f} "
        f"against {gb['generate_model_tokens_per_s']:,.0f} model tokens/s ({conditions_text(gb['conditions'])})."
    )
