"""The prompt's solved examples are true: their outputs are what our sandbox prints."""

import pytest

from deepmath_lib.profiles import get_profile
from deepmath_lib.prompts import COT_SUFFIX, EXAMPLES, build_messages, render_solution
from deepmath_lib.sandbox import Sandbox


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.problem[:30])
def test_example_outputs_are_real(example):
    with Sandbox(timeout=20) as sb:
        for step in example.steps:
            if isinstance(step, tuple):
                code, expected = step
                res = sb.run(code)
                assert res.error is None, res.error
                assert res.stdout.strip() == expected


def test_messages_per_profile():
    paper = get_profile("paper", prompt="ours")  # the original's prompt: tests/test_fidelity.py
    smol, nano = get_profile("smol"), get_profile("nano")
    m = build_messages("What is 2+2?", paper)
    assert (
        m[0]["role"] == "system" and "<tool_call>" in m[0]["content"] and m[-1]["content"] == "What is 2+2?"
    )
    assert m[0]["content"].count("Example ") == 4
    s = build_messages("What is 2+2?", smol)
    assert [x["role"] for x in s] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "```python\n" in s[2]["content"] and "```output" in s[2]["content"]
    assert build_messages("Q", nano) == [{"role": "user", "content": "Q"}]
    assert build_messages("Q", paper, tool=False) == [{"role": "user", "content": "Q" + COT_SUFFIX}]
    assert render_solution(EXAMPLES[0], paper).endswith("\\boxed{90520}.")
