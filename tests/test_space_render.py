"""The Space's trace rendering (space/app.py), without starting the app: the answer is set apart whether the model
boxes it (the few-shot style) or just states it (a GRPO-trained model's short "The answer is 56211.")."""

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
