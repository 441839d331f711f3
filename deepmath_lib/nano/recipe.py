"""The nano recipe: every setting that determines the built model (problems, tokenizer, SFT data, model, training).

Its hash names the cache folder of a build (`build.recipe_hash`). `problems`, `tokenizer` and `build` all read it,
so it lives apart from them.
"""

from __future__ import annotations

from typing import Any

RECIPE_VERSION = 7

# Everything that determines the built model; its hash names the cache directory.
RECIPE: dict[str, Any] = {
    "version": RECIPE_VERSION,
    "seed": 0,
    "tokenizer": {"number_digits": 3},
    # products: a first factor of 2 to `mul_max_digits` digits times a 2-digit one, so answers
    # span two number tokens and "What is 4821*37?" is in the distribution
    "problems": {"mul_max_digits": 4},
    "data": {
        # many examples seen twice rather than few seen often: a model trained on fewer examples for as many steps
        # memorises its products and copies the second token of a two-token answer worse on fresh problems
        "n_examples": 40000,
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
        # one key/value head per query head: copying a three-digit number token from the output block into the box
        # goes through the heads' value maps, and shared ones copy it less often (docs/nano.md)
        "num_key_value_heads": 4,
        "head_dim": 32,
        "max_position_embeddings": 1024,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    },
    "train": {
        "num_train_epochs": 2,
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
