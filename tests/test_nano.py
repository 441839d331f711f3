"""The nano profile's model: problem generator, traces, tokenizer, cache, and the built model in the agent loop."""

from __future__ import annotations

import contextlib
import io
import math
import random
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from deepmath_lib import nano
from deepmath_lib.agent import run_agent
from deepmath_lib.nano.measure import measure, summarize_tool_use
from deepmath_lib.nano.problems import _modpow_hand, _raw_problems
from deepmath_lib.profiles import get_profile
from deepmath_lib.prompts import COT_SUFFIX, build_messages

PROFILE = get_profile("nano")


def _exec(code: str) -> str:
    """Trusted test helper: runs the generator's own snippets (never model output)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, {})
    return buf.getvalue().rstrip("\n")


def _solve(row: dict) -> int:
    """Independent check of an answer, parsed back from the problem text."""
    text, kind = row["problem"], row["kind"]
    nums = [int(x) for x in re.findall(r"\d+", text)]
    if kind == "mul":
        return nums[0] * nums[1]
    if kind == "add":
        return sum(nums)
    if kind == "modpow":
        return nums[0] ** nums[1] % nums[2]
    if kind == "sumsq":
        return sum(i * i for i in range(1, nums[-2] + 1))
    if kind == "arith":
        a, b, last = nums[0], nums[1], nums[-1]
        return sum(range(a, last + 1, b - a))
    if kind == "count":
        n, a, b = nums
        return sum(1 for k in range(1, n + 1) if k % a == 0 or k % b == 0)
    if kind == "linear":
        a, b, c = nums
        return next(x for x in range(-10_000, 10_000) if a * x + b == c)
    raise AssertionError(kind)


def test_generator_deterministic_and_prefix_stable():
    a = nano.generate_problems(300, "train", seed=0)
    assert a == nano.generate_problems(300, "train", seed=0)
    assert nano.generate_problems(50, "train", seed=0) == a[:50]
    assert a != nano.generate_problems(300, "train", seed=1)
    assert {r["kind"] for r in a} == set(nano.KINDS)
    assert all(set(r) == {"id", "problem", "answer", "kind"} for r in a)
    assert len({r["id"] for r in a}) == len({r["problem"] for r in a}) == 300


def test_splits_disjoint():
    texts = {s: {r["problem"] for r in nano.generate_problems(400, s)} for s in nano.SPLITS}
    assert not texts["train"] & texts["heldout"]
    assert not texts["train"] & texts["eval"]
    assert not texts["heldout"] & texts["eval"]
    with pytest.raises(ValueError):
        nano.generate_problems(1, "test")


def test_answers_correct_and_problems_short():
    for split in nano.SPLITS:
        for row in nano.generate_problems(150, split):
            assert row["answer"] == str(_solve(row)), row
            assert len(row["problem"]) <= 60


def test_tool_snippets_exec_to_the_answer():
    rng = random.Random(0)
    for raw in _raw_problems(300, "train", 0):
        before, block, after = nano.tool_trace(raw, rng, PROFILE)
        assert before.startswith(PROFILE.call_open) and before.endswith(PROFILE.call_close)
        code = before[len(PROFILE.call_open) : -len(PROFILE.call_close)]
        out = _exec(code)
        assert out == str(raw["answer"])
        assert block == PROFILE.output_template.format(output=out)
        assert after.endswith("}") or after.endswith("}.")
        assert f"\\boxed{{{raw['answer']}}}" in after
        assert 50 <= len(before + block + after) <= 150


def test_hand_traces_correct_and_bounded():
    rng = random.Random(0)
    for raw in _raw_problems(300, "train", 0):
        text = nano.hand_trace(raw, rng)
        assert len(text) < 200
        assert PROFILE.call_open.strip() not in text
        assert text.rstrip(".").endswith(f"\\boxed{{{raw['answer']}}}")
        work = nano.hand_work(raw)
        assert work in text
        if raw["kind"] == "mul":  # every side of the chain of partial products evaluates to the answer
            assert {eval(side) for side in work.rstrip(".").split(" = ")} == {raw["answer"]}
        if raw["kind"] == "modpow":  # every "x*y=z=w" step is a right product reduced mod m
            m = raw["p"][2]
            for x, y, z, w in re.findall(r"(\d+)\*(\d+)=(\d+)=(\d+)", work):
                assert int(x) * int(y) == int(z) and int(z) % m == int(w), work


def test_modpow_hand_arithmetic():
    text = _modpow_hand(7, 50, 97)
    assert text.startswith("Squares mod 97: 7, 49, ")
    assert "50=32+16+2" in text
    assert text.endswith(f"={pow(7, 50, 97)}.")


def test_tokenizer_roundtrip_and_specials():
    tok = nano.build_tokenizer()
    text = (
        "What is 4821*37?\n<tool_call>\nprint(4821*37)\n</tool_call>\n```output\n178377\n```\n\\boxed{178377}"
    )
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    for t in (nano.TOOL_OPEN, nano.TOOL_CLOSE, nano.IM_START, nano.IM_END, nano.PAD):
        one = tok.encode(t, add_special_tokens=False)
        assert len(one) == 1 and one[0] == tok.convert_tokens_to_ids(t)
    assert tok.eos_token == nano.IM_END and tok.pad_token == nano.PAD
    assert len({tok.eos_token_id, tok.pad_token_id, tok.convert_tokens_to_ids(nano.TOOL_CLOSE)}) == 3
    assert nano.TOOL_CLOSE in tok.get_added_vocab()
    # the tool tags survive skip_special_tokens (as in Qwen3); chat markers do not
    assert tok.decode(tok.encode("<|im_start|>a<tool_call>b</tool_call>"), skip_special_tokens=True) == (
        "a<tool_call>b</tool_call>"
    )
    # characters, except that numbers up to the recipe's width are single tokens (copying one is one token)
    width = nano.RECIPE["tokenizer"]["number_digits"]
    assert len(tok.encode("9" * width, add_special_tokens=False)) == 1
    chunks = [str(1234567)[i : i + width] for i in range(0, 7, width)]
    assert tok.convert_ids_to_tokens(tok.encode("x=1234567", add_special_tokens=False)) == ["x", "=", *chunks]
    unk = tok.encode("é∑", add_special_tokens=False)
    assert unk == [tok.unk_token_id] * 2


def test_chat_template():
    tok = nano.build_tokenizer()
    agent = tok.apply_chat_template(
        build_messages("What is 2*3?", PROFILE, tool=True), add_generation_prompt=True, tokenize=False
    )
    assert agent == "<|im_start|>user\nWhat is 2*3?<|im_end|>\n<|im_start|>assistant\n"
    cot = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, *build_messages("What is 2*3?", PROFILE, tool=False)],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert cot.startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nWhat is 2*3?")
    assert COT_SUFFIX in cot and cot.endswith("<|im_start|>assistant\n")
    ids = tok.apply_chat_template(build_messages("What is 2*3?", PROFILE), add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids(nano.IM_START)


def test_sft_examples_masks():
    tok = nano.build_tokenizer()
    recipe = {**nano.RECIPE, "data": {**nano.RECIPE["data"], "n_examples": 400}}
    rows = nano.sft_examples(recipe, tok)
    modes = [r["mode"] for r in rows]
    decided = modes.count("tool") / (modes.count("tool") + modes.count("hand"))
    assert 0.15 < decided < 0.4  # the trained decision to call the tool on agent prompts
    assert 0.05 < modes.count("cot") / (len(rows) - modes.count("tool-extra")) < 0.35
    for r in rows:
        assert len(r["input_ids"]) == len(r["labels"])
        trained = tok.decode([t for t, lab in zip(r["input_ids"], r["labels"], strict=True) if lab != -100])
        assert trained.endswith(nano.IM_END + "\n")
        assert "```output" not in trained and "<|im_start|>" not in trained
        if r["mode"] == "tool":
            assert trained.startswith(nano.TOOL_OPEN)
        elif r["mode"] == "tool-extra":  # tool path trained, the decision to call not
            assert trained.startswith("\n") and nano.TOOL_CLOSE in trained
        else:
            assert nano.TOOL_OPEN not in trained


def test_recipe_hash_covers_settings():
    h = nano.recipe_hash()
    changed = {**nano.RECIPE, "train": {**nano.RECIPE["train"], "learning_rate": 1.0}}
    assert nano.recipe_hash(changed) != h
    assert nano.recipe_hash(dict(nano.RECIPE)) == h


def test_summarize_tool_use():
    problems = [{"answer": "6"}, {"answer": "6"}, {"answer": "1/2"}, {"answer": "7"}]
    call = SimpleNamespace()
    ends = {
        "n_calls_ok": 0,
        "total_tokens": 0,
        "finish_reason": "answer",
    }  # read by trace.trajectory_outcomes
    trajs = [
        SimpleNamespace(calls=[call], answer="6", model_tokens=10, **ends),
        SimpleNamespace(calls=[call, call], answer="5", model_tokens=20, **ends),
        SimpleNamespace(
            calls=[], answer="0.5", model_tokens=40, **ends
        ),  # graded by math-verify, not by string
        SimpleNamespace(calls=[], answer=None, model_tokens=60, **ends),
    ]
    s = summarize_tool_use(problems, trajs)
    assert s == {
        "n": 4,
        "code_use_rate": 0.5,
        "accuracy": 0.5,
        "tool_n": 2,
        "tool_accuracy": 0.5,
        "hand_accuracy": 0.5,
        "tool_mean_tokens": 15.0,
        "hand_mean_tokens": 50.0,
    }
    assert summarize_tool_use(problems[:1], trajs[:1])["hand_accuracy"] is None


@pytest.fixture(scope="module")
def backend():
    """The nano profile's own backend on the cached build (snippets run in the Sandbox)."""
    from deepmath_lib.backends import make_backend

    b = make_backend(PROFILE)
    yield b
    b.close()


def test_built_model_loads_and_answers(backend):
    model, tok = backend.model, backend.tokenizer
    path = nano.build_nano(verbose=False)
    assert (path / nano.COMPLETE).exists()
    assert model.config.model_type == "qwen3" and not model.training
    assert model.config.max_position_embeddings >= 1024
    assert tok.eos_token_id == nano.build_tokenizer().eos_token_id
    problems = nano.generate_problems(10, "heldout")
    sampling = replace(PROFILE.eval_sampling, temperature=0.3, top_k=20, max_model_tokens=160)
    trajs = run_agent(backend, [p["problem"] for p in problems], PROFILE, sampling=sampling, seed=0)
    shaped = [t for t in trajs if "\\boxed{" in t.text or t.calls]
    assert len(shaped) >= 3, [t.text for t in trajs]


def test_built_model_tool_path_more_accurate(backend):
    """The property GRPO relies on: calling the tool pays off (measured on 40 heldout problems)."""
    problems = nano.generate_problems(40, "heldout")
    sampling = replace(PROFILE.eval_sampling, temperature=0.6, top_k=20, max_model_tokens=200)
    s = measure(backend, PROFILE, problems, sampling=sampling, seed=1)
    assert s["tool_n"] >= 3, s
    assert s["tool_accuracy"] > (s["hand_accuracy"] or 0.0) + 0.2, s
    assert math.isfinite(s["tool_mean_tokens"])
