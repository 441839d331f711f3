"""The grader against a labelled suite (side by side with bare math-verify), MATH-500's reference solutions, the
agent's protection against executor output, and regrading stored samples."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepmath_lib import grading
from deepmath_lib.agent import run_trajectory
from deepmath_lib.backends import Backend, cut_at_stop
from deepmath_lib.bench.grading import bare_math_verify
from deepmath_lib.grading import extract_answer, is_equivalent
from deepmath_lib.profiles import Sampling, get_profile
from deepmath_lib.regrade import regrade_samples
from deepmath_lib.trace import prose_answer

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests" / "fixtures" / "grading_suite.jsonl"
MATH500 = REPO.parent / "shared" / "data" / "math500.jsonl"
ISSUE_CLASSES = ("no_box", "several_boxes", "gold_solution")
PROFILE = get_profile("nano")


def load_suite() -> list[dict]:
    return [json.loads(line) for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_suite_covers_each_class_with_positives_and_negatives():
    rows = load_suite()
    assert len(rows) >= 100
    assert len({r["id"] for r in rows}) == len(rows)
    counts = Counter((r["class"], r["label"]) for r in rows)
    for cls in ISSUE_CLASSES:
        assert counts[cls, True] + counts[cls, False] >= 20, cls
        assert counts[cls, True] >= 5 and counts[cls, False] >= 5, cls
    assert all(isinstance(r["gold"], str) and isinstance(r["pred"], str) for r in rows)


def test_agreement_with_labels_vs_bare_math_verify(capsys):
    rows = load_suite()
    ours = [is_equivalent(r["gold"], r["pred"]) == r["label"] for r in rows]
    bare = [bare_math_verify(r["gold"], r["pred"]) == r["label"] for r in rows]
    by_class = {
        cls: (
            sum(o for o, r in zip(ours, rows, strict=True) if r["class"] == cls),
            sum(b for b, r in zip(bare, rows, strict=True) if r["class"] == cls),
        )
        for cls in sorted({r["class"] for r in rows})
    }
    with capsys.disabled():
        print(
            f"\ngrading suite, n={len(rows)}: ours {sum(ours)}/{len(rows)} = {sum(ours) / len(rows):.3f}, "
            f"bare math-verify {sum(bare)}/{len(rows)} = {sum(bare) / len(rows):.3f}; per class (ours, bare): {by_class}"
        )
    assert sum(ours) >= sum(bare)
    assert sum(ours) / len(rows) >= 0.95


def test_an_extracted_answer_reads_back_the_same():
    """Stored predictions are extracted answers: grading one must give the verdict its whole text gets."""
    for r in load_suite():
        ans = extract_answer(r["pred"])
        assert is_equivalent(r["gold"], ans) == is_equivalent(r["gold"], r["pred"]), r["id"]
        if ans is not None:
            assert extract_answer(ans) == ans, r["id"]


def test_suite_off_the_main_thread_gives_the_same_verdicts():
    rows = load_suite()
    main = [is_equivalent(r["gold"], r["pred"]) for r in rows]
    grading._parse.cache_clear()
    grading._equivalent_answers.cache_clear()
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda r: is_equivalent(r["gold"], r["pred"]), rows))
    assert threaded == main


@pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 with solutions not found at {MATH500}")
def test_math500_gold_answers_equal_their_reference_solutions():
    rows = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 500
    bad = [r["unique_id"] for r in rows if not is_equivalent(r["answer"], r["solution"])]
    assert bad == []
    # and the other way round: the whole solution as the gold, its answer as the prediction
    bad = [r["unique_id"] for r in rows if not is_equivalent(r["solution"], r["answer"])]
    assert bad == []


# ----------------------------------------------------------------------------------------------- executor output


def agent_answer(text: str) -> str | None:
    """What the agent does at the end of a trajectory: the answer of the model's own prose only."""
    return prose_answer(text, PROFILE)


def test_executor_output_cannot_set_the_answer():
    call = "<tool_call>\nprint('\\\\boxed{999}')\n</tool_call>"
    out = PROFILE.output_template.format(output="\\boxed{999}\nThe final answer is 999")
    assert agent_answer(f"Let me compute.{call}{out}I am not sure.") is None
    assert agent_answer(f"Let me compute.{call}{out}So the answer is \\boxed{{3}}.") == "3"
    assert agent_answer(f"Let me compute.{call}{out}So the answer is $3$.") == "3"
    # the whole text would have given the executor's box
    assert extract_answer(f"Let me compute.{call}{out}I am not sure.") == "999"


class Scripted(Backend):
    """Returns pre-written segments, cut at the stop as the real backends cut them."""

    def __init__(self, tokenizer, script):
        self.tokenizer = tokenizer
        self.eos_ids = (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
        self.script = list(script)

    async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
        text = self.script.pop(0) if self.script else ""
        new = self.tokenizer.encode(text, add_special_tokens=False)
        return cut_at_stop(self.tokenizer, new, stop, self.eos_ids, max_new_tokens)


def test_agent_loop_a_snippet_printing_an_answer_does_not_answer():
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    code = "print('\\\\bo' + 'xed{999}'); print('The final answer is 999')"
    backend = Scripted(tok, [f"Let me check.<tool_call>\n{code}\n</tool_call>", "Done.<|im_end|>"])
    prompt = tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    traj = asyncio.run(run_trajectory(backend, prompt, PROFILE, Sampling(max_model_tokens=400)))
    assert traj.calls and traj.calls[0].ok and "999" in traj.calls[0].output
    assert traj.answer is None
    assert agent_answer(traj.text) is None


# ----------------------------------------------------------------------------------------------- regrading


def test_regrade_samples_on_a_copy(tmp_path):
    samples = tmp_path / "nano" / "samples"
    samples.mkdir(parents=True)
    real = REPO / "data" / "results" / "nano" / "samples" / "nano__agent.jsonl"
    meta = real.with_name("nano__agent.meta.json")
    kept = real.read_text(encoding="utf-8").splitlines()[:30]
    (samples / "nano__agent.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    shutil.copy(meta, samples / meta.name)
    call = "<tool_call>\nprint('\\\\boxed{7}')\n</tool_call>"
    out = PROFILE.output_template.format(output="\\boxed{7}")
    made = [
        {"gold": "{1,2,3}", "text": "\\boxed{1}, \\boxed{2}, \\boxed{3}", "pred": "3", "correct": False},
        {"gold": "7", "text": f"Hmm.{call}{out}I give up.", "pred": None, "correct": False},
        {"gold": "28\\%", "text": "The final answer is $28\\%$.", "pred": None, "correct": False},
        {"gold": "}{", "text": "\\boxed{1}", "pred": "1", "correct": False},
    ]
    rows = [{"problem_id": str(i), "sample": 0, "finish_reason": "eos", **r} for i, r in enumerate(made)]
    (samples / "toy__agent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    counts = regrade_samples(tmp_path, "nano")
    assert counts["files"] == 2 and counts["rows"] == 34

    toy = [json.loads(line) for line in (samples / "toy__agent.jsonl").read_text().splitlines()]
    assert [r["pred"] for r in toy] == ["1, 2, 3", None, "28\\%", "1"]
    assert [r["correct"] for r in toy] == [True, False, True, None]
    assert [r["finish_reason"] for r in toy] == ["answer", "eos", "answer", "answer"]
    # the committed nano samples keep their verdicts, and the fingerprint file is untouched
    regraded = [json.loads(line) for line in (samples / "nano__agent.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in regraded] == [json.loads(line)["correct"] for line in kept]
    assert (samples / meta.name).read_text() == meta.read_text()
    assert (
        counts["correct_changed"] == 3
    )  # the toy rows' first, third (now right) and fourth (gold unparseable)
