"""The Space's trace rendering (space/app.py), without starting the app: the answer is set apart whether the model
boxes it (the few-shot style) or just states it (a GRPO-trained model's short "The answer is 56211."); each code block
says whether it ran; the summary says when an answer was read from the text and what the model was trained on; smol
with GRPO is offered only when its adapter is there."""

from __future__ import annotations

import importlib.util

import pytest

from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.profiles import get_profile

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def app():
    spec = importlib.util.spec_from_file_location("space_app", REPO_ROOT / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trace(prose: str) -> str:
    prof = get_profile("smol")
    call = f"{prof.call_open}print(123*457){prof.call_close}"
    return "Let me compute.\n" + call + prof.output_template.format(output="56211") + prose


def test_a_boxed_answer_is_set_apart_where_it_is_boxed(app):
    html = app.render_trace(_trace("So the answer is \\boxed{56211}."), get_profile("smol"), answer="56211")
    assert html.count('class="dm-answer"') == 1 and ">\\boxed{56211}</b>" in html


def test_a_stated_answer_is_set_apart_in_the_last_prose_block_only(app):
    prof = get_profile("smol")
    html = app.render_trace(_trace("The answer is 56211."), prof, answer="56211")
    assert html.count('class="dm-answer"') == 1
    assert '">56211</b>.' in html  # in the prose, not the output block (which shows 56211 too)
    assert html.index('class="dm-output"') < html.index('class="dm-answer"')
    # no answer (a partial trace) or one the prose does not spell out: nothing is marked
    assert 'class="dm-answer"' not in app.render_trace(_trace("The answer is 56211."), prof)
    assert 'class="dm-answer"' not in app.render_trace(_trace("The answer is 56211."), prof, answer="211")
    assert 'class="dm-answer"' not in app.render_trace(_trace("It is fifty thousand."), prof, answer="56211")
    # an exponent is not a stated answer: smol's "x^3 + 2x is 3x^2." read as 3 marks nothing
    assert 'class="dm-answer"' not in app.render_trace(
        "The derivative of x^3 + 2x is 3x^2.", prof, answer="3"
    )
    assert '">3</b>.' in app.render_trace("So x^2 is 9 and x is 3.", prof, answer="3")


def test_a_box_with_nested_braces_is_set_apart_whole(app):
    prof = get_profile("smol")
    html = app.render_trace(_trace("So \\boxed{\\frac{1}{2}} and \\boxed{3"), prof, answer="\\frac{1}{2}")
    assert html.count('class="dm-answer"') == 1 and ">\\boxed{\\frac{1}{2}}</b>" in html


def test_each_code_block_says_whether_it_ran(app):
    prof = get_profile("smol")
    ran = app.render_trace(_trace("The answer is 56211."), prof, done=True)
    assert "ran in the sandbox" in ran and "dm-notrun" not in ran
    # a block the model never closed (its token budget ran out inside it) was not run, and says so
    cut = _trace("Check:\n") + prof.call_open + "for i in range(10):\n    print(i"
    html = app.render_trace(cut, prof, done=True)
    assert html.count('class="dm-code dm-notrun"') == 1 and "never closed, so not run" in html
    assert "runs in the sandbox" not in html
    # a closed block the trajectory ended on (the call limit) was not run either; while streaming it is about to run
    closed = _trace("Again:\n") + prof.call_open + "print(1)" + prof.call_close
    assert "not run (the model had used its calls)" in app.render_trace(closed, prof, done=True)
    assert "runs in the sandbox" in app.render_trace(closed, prof, running=True)


def _traj(text: str, answer: str | None):
    from deepmath_lib.agent import Trajectory

    return Trajectory(problem="p", prompt_ids=[], text=text, answer=answer, finish_reason="answer")


def test_the_summary_says_when_the_answer_was_read_from_the_text(app):
    prof = get_profile("smol")
    boxed = app.render_summary(_traj(_trace("So \\boxed{56211}."), "56211"), "w", "smol", True)
    assert "**Answer: 56211**" in boxed and "read from its text" not in boxed
    prose = app.render_summary(_traj("The derivative of x^3 + 2x is 3x^2.", "3"), "w", "smol", True)
    assert "**Answer: 3** (not boxed by the model: read from its text)" in prose
    # a box inside the code or the output is not the model's answer: still read from the text
    code_box = prof.call_open + "print('\\boxed{3}')" + prof.call_close + "It is 3."
    assert "read from its text" in app.render_summary(_traj(code_box, "3"), "w", "smol", True)


def test_the_summary_says_what_each_model_was_trained_on(app):
    from deepmath_lib.nano import generate_problems
    from deepmath_lib.nano.problems import KINDS

    nano = app.render_summary(_traj("The answer is \\boxed{5}.", "5"), "w", "nano", True)
    assert f"nano was trained on {len(KINDS)} kinds of problem only" in nano
    assert "Answers to other kinds of problem are often wrong." in nano
    train = {p["problem"] for p in generate_problems(20 * len(KINDS), split="train", seed=0)}
    shown = app.knowledge_note("nano").split("one of each: ")[1].split(" Answers")[0].split(" · ")
    assert len(shown) == len(KINDS) and set(shown) <= train  # taken from the training data, one per kind
    smol = app.render_summary(_traj("The answer is \\boxed{5}.", "5"), "w", "smol", True)
    assert "smol is SmolLM2-135M-Instruct as released, not trained here" in smol
    assert "What is 248\\*365?" in smol  # its solved examples, escaped for Markdown


def test_smol_with_grpo_is_offered_only_with_an_adapter(app, monkeypatch, tmp_path):
    """The shipped adapter is offered; a copy without it (a local run's folder missing its adapter, or no trained
    weights at all) offers nano and untrained smol, and says so."""
    assert app.MODEL_CHOICES[app.SMOL_GRPO] == ("smol", get_profile("smol").released_weights)
    nano_weights = app.MODEL_CHOICES["nano"][1]
    smol_weights = {"smol": None}
    monkeypatch.setattr(
        app, "trained_model_path", lambda p: nano_weights if p.name == "nano" else smol_weights["smol"]
    )
    for missing in (None, str(tmp_path / "smol-grpo")):
        smol_weights["smol"] = missing
        monkeypatch.setattr(app, "MODEL_CHOICES", app.model_choices())
        assert app.smol_adapter() is None and list(app.MODEL_CHOICES) == ["nano", "smol"]
        assert "no GRPO-trained adapter for smol" in app.intro()
    (tmp_path / "smol-grpo").mkdir()
    (tmp_path / "smol-grpo" / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(app, "MODEL_CHOICES", app.model_choices())
    assert app.MODEL_CHOICES == {
        "nano": ("nano", nano_weights),
        "smol": ("smol", None),
        app.SMOL_GRPO: ("smol", str(tmp_path / "smol-grpo")),
    }
    assert f"**{app.SMOL_GRPO}** is the same model with a small adapter that GRPO trained" in app.intro()
    assert app.knowledge_note(app.SMOL_GRPO).startswith(
        f"{app.SMOL_GRPO} was trained on 7 kinds of problem only"
    )


@pytest.mark.slow
def test_smol_with_grpo_solves_through_its_adapter(app, monkeypatch, tmp_path):
    """The "smol + GRPO" choice end to end in the app's handler, on a LoRA adapter that changes nothing (peft
    starts B at zero): it loads as an adapter on smol, the summary names it, and the greedy trace is untrained
    smol's, token for token. (The shipped, trained adapter in a browser: tests/test_space.py.)"""
    import asyncio

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from deepmath_lib.models import model_dir

    prof = get_profile("smol")
    base = AutoModelForCausalLM.from_pretrained(model_dir(prof))
    adapter = tmp_path / "smol-grpo"
    lora = LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(adapter)
    monkeypatch.setattr(app, "trained_model_path", lambda p: str(adapter) if p.name == "smol" else None)
    monkeypatch.setattr(app, "MODEL_CHOICES", app.model_choices())
    assert app.MODEL_CHOICES[app.SMOL_GRPO] == ("smol", str(adapter))

    async def last(choice):
        updates = [u async for u in app.solve("What is 123*457?", choice, True)]
        return updates[-1]

    trace_grpo, summary_grpo = asyncio.run(last(app.SMOL_GRPO))
    trace_base, summary_base = asyncio.run(last("smol"))
    assert f"Weights: trained weights {adapter} · model {app.SMOL_GRPO}" in summary_grpo
    assert (
        f"{app.SMOL_GRPO} was trained on" in summary_grpo and "as released, not trained here" in summary_base
    )
    assert "model tokens" in summary_grpo and trace_grpo == trace_base
