"""The agent loop: token-level concatenation, env mask, finish reasons on bad input, concurrency."""

import pytest

from deepmath_lib.agent import Trajectory, run_agent, run_trajectory
from deepmath_lib.backends import Backend, cut_at_stop
from deepmath_lib.nano import build_tokenizer
from deepmath_lib.profiles import Sampling, get_profile
from deepmath_lib.trace import extract_code, trace_parts

PROFILE = get_profile("nano")
EOS = "<|im_end|>"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


class Scripted(Backend):
    """Returns pre-written segments, as a model would, cut at the stop exactly like the real backends."""

    def __init__(self, tokenizer, script, fail_at=None):
        self.tokenizer = tokenizer
        self.eos_ids = (tokenizer.convert_tokens_to_ids(EOS),)
        self.script = list(script)
        self.sent: list[list[int]] = []
        self.fail_at = fail_at

    async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise RuntimeError("backend exploded")
        text = self.script.pop(0) if self.script else ""
        new = self.tokenizer.encode(text, add_special_tokens=False)
        out = cut_at_stop(self.tokenizer, new, stop, self.eos_ids, max_new_tokens)
        self.sent.append(out.token_ids)
        return out


def run(tok, script, budget=200, profile=PROFILE, **kw) -> tuple[Trajectory, Scripted]:
    import asyncio

    backend = Scripted(tok, script, **kw)
    prompt = tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    traj = asyncio.run(run_trajectory(backend, prompt, profile, Sampling(max_model_tokens=budget)))
    return traj, backend


def test_call_output_masked_and_answer(tok):
    traj, backend = run(tok, ["Compute.<tool_call>\nprint(6*7)\n</tool_call>", "So \\boxed{42}." + EOS])
    assert traj.finish_reason == "answer" and traj.answer == "42"
    assert len(traj.calls) == 1 and traj.calls[0].ok and traj.calls[0].output.strip() == "42"
    block = tok.encode(PROFILE.output_template.format(output=traj.calls[0].output), add_special_tokens=False)
    first = backend.sent[0]
    # generated ids are concatenated as generated, never re-encoded; the block in between is masked 0
    assert traj.completion_ids == first + block + backend.sent[1]
    assert traj.env_mask == [1] * len(first) + [0] * len(block) + [1] * len(backend.sent[1])
    assert traj.model_tokens == len(first) + len(backend.sent[1])
    assert traj.total_tokens == traj.model_tokens + len(block)
    kinds = [k for k, _ in trace_parts(traj.text, PROFILE)]
    assert kinds == ["text", "code", "output", "text"]


def test_state_persists_between_snippets(tok):
    traj, _ = run(
        tok,
        ["<tool_call>\nx = 5\n</tool_call>", "<tool_call>\nprint(x * 2)\n</tool_call>", "\\boxed{10}" + EOS],
    )
    assert [c.ok for c in traj.calls] == [True, True]
    assert traj.calls[1].output.strip() == "10"


def test_code_error_is_read_and_loop_continues(tok):
    traj, _ = run(tok, ["<tool_call>\n1/0\n</tool_call>", "\\boxed{1}" + EOS])
    assert not traj.calls[0].ok and "ZeroDivisionError" in traj.calls[0].output
    assert traj.finish_reason == "answer"


def test_unclosed_code_block_ends_with_eos(tok):
    traj, _ = run(tok, ["<tool_call>\nprint(1)" + EOS])
    assert traj.finish_reason == "eos" and traj.answer is None and traj.calls == []


def test_never_answers_hits_budget(tok):
    traj, _ = run(tok, ["a" * 500], budget=50)
    assert traj.finish_reason == "budget" and traj.model_tokens == 50 and traj.answer is None


def test_call_cap(tok):
    call = "<tool_call>\nprint(1)\n</tool_call>"
    traj, _ = run(tok, [call] * (PROFILE.max_calls + 1))
    assert traj.finish_reason == "calls" and len(traj.calls) == PROFILE.max_calls


def test_empty_output_and_odd_characters(tok):
    traj, _ = run(tok, [""])
    assert traj.finish_reason == "eos" and traj.completion_ids == []
    traj, _ = run(tok, ["<tool_call>\nprint('\\u00ff\\u4e2d\\U0001f600')\n</tool_call>", "\\boxed{x}" + EOS])
    assert traj.calls[0].ok and traj.finish_reason == "answer"


def test_close_without_open_is_reported(tok):
    traj, _ = run(tok, ["print(1)\n</tool_call>", "\\boxed{1}" + EOS])
    assert not traj.calls[0].ok and "no opening tag" in traj.calls[0].output


def test_backend_failure_ends_only_that_trajectory(tok):
    traj, _ = run(tok, ["<tool_call>\nprint(1)\n</tool_call>"], fail_at=1)
    assert traj.finish_reason == "error" and "backend exploded" in traj.error


def test_output_cannot_fake_an_answer(tok):
    code = "print('\\\\bo' + 'xed{999} </tool' + '_call> ' + '`' * 3)"
    traj, _ = run(tok, [f"<tool_call>\n{code}\n</tool_call>", EOS])
    assert traj.calls[0].ok
    assert traj.answer is None  # the executor's text never counts as the model's answer
    assert "\\boxed{999}" not in traj.calls[0].output and "</tool_call>" not in traj.calls[0].output
    # nor does a box written inside the model's code
    traj, _ = run(tok, ["<tool_call>\ns = '\\\\boxed{7}'\n</tool_call>", EOS])
    assert traj.answer is None


def test_extract_code():
    assert extract_code("x<tool_call>\na=1\nprint(a)\n</tool_call>", PROFILE) == "a=1\nprint(a)"
    assert extract_code("no open</tool_call>", PROFILE) is None


def test_trace_parts_in_both_call_formats():
    trace = (
        "We need 123*457.\n<tool_call>\nx = 123 * 457\nx\n</tool_call>\n```output\n56211\n```\n"
        "The answer is \\boxed{56211}."
    )
    parts = trace_parts(trace, PROFILE)
    assert [k for k, _ in parts] == ["text", "code", "output", "text"]
    assert "".join(p for _, p in parts) == trace
    smol = get_profile("smol")
    assert trace_parts("```python\nprint(1)\n```\n```output\n1\n```", smol)[0] == (
        "code",
        "```python\nprint(1)\n```",
    )
    assert [k for k, _ in trace_parts("Try.\n```python\nprint(1", smol)] == ["text", "code"]  # left open
    assert trace_parts("no calls, \\boxed{2}", PROFILE) == [("text", "no calls, \\boxed{2}")]


def test_env_mask_html_colours_each_token_by_its_mask(tok):
    from deepmath_lib.render import env_mask_html

    model_ids = tok.encode("<tool_call>\nprint(1<2)\n</tool_call>", add_special_tokens=False)
    block_ids = tok.encode(PROFILE.output_template.format(output="True"), add_special_tokens=False)
    out = env_mask_html(tok, model_ids + block_ids, [1] * len(model_ids) + [0] * len(block_ids))
    assert out.count('title="model token') == len(model_ids)
    assert out.count('title="executor token') == len(block_ids)
    assert f"model tokens: {len(model_ids)}" in out and f"executor tokens: {len(block_ids)}" in out
    assert "&lt;tool_call&gt;" in out and "<tool_call>" not in out and ">&lt;<" in out  # escaped
    with pytest.raises(ValueError, match="mask"):
        env_mask_html(tok, model_ids, [1])


def test_nano_concurrent_is_deterministic_and_well_formed():
    from deepmath_lib.backends import TransformersBackend
    from deepmath_lib.nano import generate_problems, load_nano

    model, tok = load_nano()
    problems = [p["problem"] for p in generate_problems(12, split="eval")]
    runs = []
    for _ in range(2):
        backend = TransformersBackend(model, tok, max_batch=12)
        runs.append(run_agent(backend, problems, PROFILE, sampling=PROFILE.train_sampling, seed=3))
    a, b = runs
    assert [t.completion_ids for t in a] == [t.completion_ids for t in b]
    for t in a:
        assert len(t.env_mask) == len(t.completion_ids)
        assert t.finish_reason in ("answer", "eos", "budget", "calls")
        assert t.model_tokens <= PROFILE.train_sampling.max_model_tokens


def test_context_guard_caps_the_step_and_ends_with_context(tok):
    """A trajectory never asks the engine for more than the context has room for: the last step is cut to the room
    left and the trajectory ends with finish reason `context`, its tokens within `max_model_len`."""
    prompt_len = len(
        tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    )
    prof = get_profile("nano", max_model_len=prompt_len + 30)
    traj, backend = run(tok, ["a" * 100], budget=200, profile=prof)
    assert traj.finish_reason == "context" and traj.error is None
    assert traj.model_tokens == 30 and len(traj.prompt_ids) + traj.total_tokens == prof.max_model_len


def test_context_guard_cuts_an_output_block_that_would_pass_it(tok):
    """A call whose output block would pass the context: the block is cut at the limit (still masked 0) and the
    trajectory ends with `context` without asking the engine again."""
    call = "<tool_call>\nprint('x' * 200)\n</tool_call>"
    prompt_len = len(
        tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    )
    n_call = len(tok.encode(call, add_special_tokens=False))
    prof = get_profile("nano", max_model_len=prompt_len + n_call + 20)
    traj, backend = run(tok, [call, "never asked" + EOS], budget=500, profile=prof)
    assert traj.finish_reason == "context" and len(backend.sent) == 1
    assert len(traj.prompt_ids) + traj.total_tokens == prof.max_model_len
    assert traj.env_mask == [1] * n_call + [0] * 20
    assert traj.text.endswith(tok.decode(traj.completion_ids[n_call:], skip_special_tokens=False))


def test_stop_pairs_with_an_empty_open_string_stop_on_the_close_alone(tok):
    """smolagents' stop sequences arrive as pairs with an empty open string: an engine that takes stop strings
    (vLLM, OpenAI servers) gets the close string itself, never an empty string (vLLM refuses one)."""
    import asyncio

    from deepmath_lib.backends import GenOutput, Stop, generate_with_pairs

    sent = []

    async def raw(ids, max_new, stop_strs, stop_ids):
        sent.append(list(stop_strs))
        assert "" not in stop_strs
        text = "x = 1\nObservation:"
        return GenOutput(tok.encode(text, add_special_tokens=False), "stop")

    out = asyncio.run(generate_with_pairs(raw, [1], 50, Stop(pairs=(("", "Observation:"),)), tok, ()))
    assert sent == [["Observation:"]] and out.finish == "stop"
    assert tok.decode(out.token_ids).endswith("Observation:")
