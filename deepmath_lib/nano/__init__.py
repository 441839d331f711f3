"""The `nano` profile's model: a tiny Qwen3-architecture LM that the repo builds from a seed, with no download.

- `problems`: the synthetic problems and their tool / by-hand solution traces;
- `tokenizer`: the character-level tokenizer with ChatML markers and tool tags;
- `recipe`: every setting of the build (`RECIPE`);
- `build`: the warm-start SFT and the cache (`build_nano`, `load_nano`);
- `measure`: code-use rate and accuracy with and without calls, in the project's agent loop (import it as
  `deepmath_lib.nano.measure`: it runs the agent loop, which loads models through this package).

`python -m deepmath_lib.nano [--force] [--measure N]` builds the model and optionally measures it.
"""

from .build import COMPLETE, build_nano, load_nano, recipe_hash, sft_examples
from .problems import KINDS, SPLITS, generate_problems, hand_trace, hand_work, tool_snippet, tool_trace
from .recipe import RECIPE, RECIPE_VERSION
from .tokenizer import CHARSET, IM_END, IM_START, PAD, TOOL_CLOSE, TOOL_OPEN, UNK, build_tokenizer

__all__ = [
    "CHARSET",
    "COMPLETE",
    "IM_END",
    "IM_START",
    "KINDS",
    "PAD",
    "RECIPE",
    "RECIPE_VERSION",
    "SPLITS",
    "TOOL_CLOSE",
    "TOOL_OPEN",
    "UNK",
    "build_nano",
    "build_tokenizer",
    "generate_problems",
    "hand_trace",
    "hand_work",
    "load_nano",
    "recipe_hash",
    "sft_examples",
    "tool_snippet",
    "tool_trace",
]
