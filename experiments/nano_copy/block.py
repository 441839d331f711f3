"""The nano page's paragraph on copying, from this experiment's `results/copy.json`."""

from __future__ import annotations

import json

from experiments.common import results_dir


def render() -> str:
    rec = json.loads((results_dir("nano_copy") / "copy.json").read_text())
    by = {m["model"]: m for m in rec["models"]}
    base, grpo = by["nano-base"], by["nano-grpo"]

    def digits(m: dict, d: str) -> str:
        tool, copied = m["copies_by_output_digits"].get(d, [0, 0])
        return f"{copied}/{tool}"

    s = rec["sampling"]
    return (
        f"nano's weakest step is copying. On {rec['problems']}, {rec['samples']} samples each at the eval "
        f"sampling (T {s['temperature']}, top_p {s['top_p']}), `python -m experiments.nano_copy.nano_copy "
        "deepmath_lib/weights/nano-base deepmath_lib/weights/nano-grpo` (writes "
        "`experiments/nano_copy/results/copy.json`): "
        f"its snippets compute the right product in {base['snippet_right_of_code']:.0%} of tool trajectories before "
        f"GRPO and {grpo['snippet_right_of_code']:.0%} after, but its box repeats the printed output in only "
        f"{base['answer_copies_output_of_code']:.0%} and {grpo['answer_copies_output_of_code']:.0%} (six-digit "
        f"outputs {digits(base, '6')} and {digits(grpo, '6')}, five-digit ones {digits(base, '5')} and "
        f"{digits(grpo, '5')}). It copies rather than computes: teacher-forced on the {base['teacher_forced_n']} "
        "six-digit products, with the output's second number token replaced by a random one, the box follows the "
        f"output ({base['second_token_copied_counterfactual']:.0%} before, "
        f"{grpo['second_token_copied_counterfactual']:.0%} after; {base['second_token_copied']:.0%} and "
        f"{grpo['second_token_copied']:.0%} with the true output) and predicts the true product's token in "
        f"{base['second_token_guesses_true']:.0%} and {grpo['second_token_guesses_true']:.0%}."
    )
