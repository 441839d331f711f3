"""Faithful to the original: its prompt read at run time from its files (a fixture with made-up text stands in for
them here), its code-reward rule as a setting, and a fidelity table whose "ours" column is the profile's values."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess

import pytest

from deepmath_lib import prompts
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.profiles import get_profile
from deepmath_lib.prompts import PromptUnavailable, build_messages, load_original_prompt, prompt_for

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "original_repo"
FEWSHOT = (FIXTURE / "deep_math" / "fewshot.txt").read_text()
# What the fixture's constants give, written out by hand (not by the code under test): the instruction with the
# few-shot file in place of {examples} and {{}} turned into {}.
SYSTEM = (
    "FIXTURE instruction line one.\nWrite code as <tool_call>\n# code\n</tool_call>\nEnd with \\boxed{}.\n\n"
    "FIXTURE examples follow:\n\n" + FEWSHOT + "\n\nFIXTURE now the real question.\n"
)
QUESTION = "What is 2+2?"
USER = "FIXTURE-Q: What is 2+2?"
BASELINE = "What is 2+2?\n\nFIXTURE baseline suffix \\boxed{}."


@pytest.fixture(autouse=True)
def _no_ambient_source(monkeypatch):
    """Tests see only the sources they give: no clone or commit from the environment."""
    monkeypatch.delenv("DEEPMATH_ORIGINAL_REPO", raising=False)
    monkeypatch.delenv("DEEPMATH_ORIGINAL_COMMIT", raising=False)
    load_original_prompt.cache_clear()
    yield
    load_original_prompt.cache_clear()


def paper(**kw):
    return get_profile("paper", original_repo=str(FIXTURE), **kw)


# ------------------------------------------------------------------------------------------------ the prompt


def test_messages_of_the_original_prompt_from_the_fixture_clone():
    prof = paper()
    assert prof.prompt == "original"
    assert build_messages(QUESTION, prof) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER},
    ]
    assert build_messages(QUESTION, prof, tool=False) == [{"role": "user", "content": BASELINE}]


class Recording:
    """A backend that records every request's prompt and answers at once, so nothing is loaded."""

    def __init__(self, tok, log, model_path):
        from deepmath_lib.backends import Backend, cut_at_stop

        class _B(Backend):
            async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
                log.append((model_path, tok.decode(ids, skip_special_tokens=False)))
                new = tok.encode("\\boxed{4}<|im_end|>", add_special_tokens=False)
                return cut_at_stop(tok, new, stop, self.eos_ids, max_new_tokens)

        self.backend = _B()
        self.backend.tokenizer = tok
        self.backend.eos_ids = (tok.convert_tokens_to_ids("<|im_end|>"),)


def test_evaluating_the_released_adapter_sends_the_original_prompt(tmp_path, monkeypatch):
    """`evaluate` on the paper profile with Intel/deepmath-v1, every configuration: the requests carry the original's
    system message and question template (+Agent, DeepMath) or its baseline template (Baseline, +GRPO), built from
    the fixture clone; no model is loaded. The samples' fingerprint names the prompt."""
    from deepmath_lib import backends, models
    from deepmath_lib.evaluate import evaluate
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    log: list = []
    monkeypatch.setattr(
        backends, "make_backend", lambda prof, model_path=None, **kw: Recording(tok, log, model_path).backend
    )
    # the recording backend stands in for the hub's models: the check that they can be fetched passes
    monkeypatch.setattr(models, "_hub_unreachable", lambda: None)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "q1", "problem": QUESTION, "answer": "4"}) + "\n")
    evaluate(
        paper(),
        [str(data)],
        samples=1,
        trained_model="Intel/deepmath-v1",
        results_root=tmp_path,
        progress=False,
    )

    def chat(*messages):
        return tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    system, user = {"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}
    baseline = {"role": "user", "content": BASELINE}
    assert log == [
        (None, chat(baseline)),  # Baseline: base model, the original's baseline template
        (None, chat(system, user)),  # +Agent: the same prompt as DeepMath
        ("Intel/deepmath-v1", chat(baseline)),  # +GRPO
        ("Intel/deepmath-v1", chat(system, user)),  # DeepMath
    ]
    sha = load_original_prompt(str(FIXTURE), prompts.ORIGINAL_COMMIT).sha256
    for meta in (tmp_path / "paper" / "samples").glob("*.meta.json"):
        assert json.loads(meta.read_text())["prompt"] == {
            "prompt": "original",
            "commit": "278bb58",
            "sha256": sha,
        }


def test_the_fixture_is_parsed_never_executed():
    """The fixture's prompts.py raises on its first line if run: reading it works, so it was only parsed; a constant
    built by an expression is not a string constant."""
    consts = prompts.string_constants((FIXTURE / "deep_math" / "prompts.py").read_text())
    assert {"basic_system", "deep_seek_math", "simple_template", "agent_math_instruction"} <= set(consts)
    assert "computed" not in consts and "not_a_string" not in consts


def test_without_the_files_every_command_stops_at_once_naming_the_ways_out(tmp_path, monkeypatch, capsys):
    from deepmath_lib import backends
    from deepmath_lib.cli import main

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(backends, "make_backend", no_model)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "q1", "problem": QUESTION, "answer": "4"}) + "\n")
    data = str(data)
    for argv in (
        ["eval", "--profile", "paper", "--datasets", data, "--results-root", str(tmp_path)],
        ["train", "--profile", "paper"],
        ["solve", QUESTION, "--profile", "paper"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert "--original-repo PATH" in err and "DEEPMATH_ORIGINAL_REPO" in err and "--prompt ours" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]  # nothing written


def test_a_download_that_fails_names_the_ways_out(monkeypatch):
    import urllib.error
    import urllib.request

    def offline(url, timeout=None):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(
        PromptUnavailable, match="could not download .*raw.githubusercontent.com.*--prompt ours"
    ):
        prompts.check_prompt(get_profile("paper", original_commit="a" * 40))


def test_a_missing_folder_or_constant_is_a_clear_error(tmp_path):
    with pytest.raises(PromptUnavailable, match="no such folder"):
        prompts.check_prompt(get_profile("paper", original_repo=str(tmp_path / "nope")))
    clone = tmp_path / "clone"
    shutil.copytree(FIXTURE, clone)
    path = clone / "deep_math" / "prompts.py"
    path.write_text(path.read_text().replace("simple_template =", "other_template ="))
    with pytest.raises(ValueError, match="defines no string constant simple_template"):
        prompts.check_prompt(get_profile("paper", original_repo=str(clone)))
    with pytest.raises(ValueError, match="unknown prompt 'theirs'"):
        prompts.check_prompt(get_profile("paper", prompt="theirs"))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_clone_is_read_at_the_pinned_commit(tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(FIXTURE, clone)

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(clone), *args], capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pinned")
    pinned = git("rev-parse", "HEAD").strip()
    path = clone / "deep_math" / "prompts.py"
    path.write_text(path.read_text().replace("FIXTURE-Q: {question}", "LATER: {question}"))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "later")
    at = get_profile("paper", original_repo=str(clone), original_commit=pinned[:7])
    assert build_messages(QUESTION, at)[1]["content"] == USER  # the pinned commit, not what is checked out
    head = get_profile("paper", original_repo=str(clone), original_commit="HEAD")
    assert build_messages(QUESTION, head)[1]["content"] == "LATER: What is 2+2?"
    with pytest.raises(PromptUnavailable, match="has no deep_math/prompts.py at commit 278bb58"):
        prompts.check_prompt(get_profile("paper", original_repo=str(clone)))


def test_a_grpo_output_is_evaluated_with_the_prompt_it_trained_with(tmp_path):
    out = tmp_path / "grpo"
    final, ckpt = out / "final", out / "checkpoint-100"
    final.mkdir(parents=True)
    ckpt.mkdir()
    record = prompts.prompt_record(paper())
    (out / prompts.PROMPT_RECORD).write_text(json.dumps(record))
    (final / prompts.PROMPT_RECORD).write_text(json.dumps({"prompt": "ours"}))
    assert prompt_for(paper(), final).prompt == "ours"  # recorded with the weights
    assert prompt_for(paper(), ckpt).prompt == "original"  # a checkpoint: the run's record above it
    assert prompt_for(paper(), final, prompt="original").prompt == "original"  # chosen explicitly
    assert (
        prompt_for(paper(), "Intel/deepmath-v1").prompt == "original"
    )  # the released adapter: the original's
    (out / prompts.PROMPT_RECORD).write_text(json.dumps({**record, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="trained with the original's prompt 000000000000"):
        prompt_for(paper(), ckpt)


def test_a_grpo_run_records_its_prompt_beside_its_weights(tmp_path):
    """One nano GRPO step with the fixture's prompt: the run's folder and its final weights carry the record, so
    evaluating them uses that prompt although nano's own is ours; the record leaves the weights' fingerprint alone."""
    from deepmath_lib.fingerprints import model_fingerprint
    from deepmath_lib.grpo import train

    prof = get_profile(
        "nano",
        quick=True,
        prompt="original",
        original_repo=str(FIXTURE),
        prompts_per_step=2,
        num_generations=2,
    )
    out = tmp_path / "grpo"
    train(
        prof, steps=1, output_dir=out, heldout=2, progress=False, write_summary=False, results_root=tmp_path
    )
    record = prompts.prompt_record(prof)
    assert record["prompt"] == "original"
    for folder in (out, out / "final"):
        assert json.loads((folder / prompts.PROMPT_RECORD).read_text()) == record
    assert prompt_for(get_profile("nano", original_repo=str(FIXTURE)), out / "final").prompt == "original"
    fp = model_fingerprint(get_profile("nano"), out / "final")
    (out / "final" / prompts.PROMPT_RECORD).unlink()
    assert model_fingerprint(get_profile("nano"), out / "final") == fp


# ------------------------------------------------------------------------------------------------ fingerprints


def test_our_prompt_keeps_every_committed_fingerprint():
    """nano's and smol's committed samples stay valid: the agent fingerprint of our prompt is what it was, and their
    meta files name no prompt (the full nano check is tests/test_evaluate.py)."""
    from deepmath_lib.fingerprints import agent_fingerprint

    for name in ("nano", "smol"):
        metas = sorted((REPO_ROOT / "data" / "results" / name / "samples").glob("*.meta.json"))
        assert metas
        for meta in metas:
            stored = json.loads(meta.read_text())
            assert stored["agent"] == agent_fingerprint(get_profile(name)) and "prompt" not in stored, meta
    ours = get_profile("paper", prompt="ours")
    assert agent_fingerprint(ours) != agent_fingerprint(paper())


# ------------------------------------------------------------------------------------------------ code reward


def test_code_reward_rules():
    from deepmath_lib.rewards import code_reward, code_reward_for

    ok, formed = [0, 1, 0, 2], [0, 1, 2, 2]  # the third made calls, none of which ran without error
    assert code_reward([None] * 4, n_calls_ok=ok, n_calls_formed=formed) == [0.0, 1.0, 0.0, 1.0]
    called = code_reward_for("called")
    assert called.__name__ == "code_reward"  # TRL logs rewards/code_reward/mean
    assert called([None] * 4, n_calls_ok=ok, n_calls_formed=formed) == [0.0, 1.0, 1.0, 1.0]
    assert get_profile("paper").code_reward == "called"
    assert get_profile("nano").code_reward == get_profile("smol").code_reward == "ran"
    with pytest.raises(ValueError, match="unknown code reward rule 'any'"):
        code_reward_for("any")


def test_the_trainer_pays_code_use_by_the_profiles_rule(tmp_path):
    from deepmath_lib.grpo import _load_policy, build_trainer

    for rule, paid in (("ran", [0.0, 1.0]), ("called", [1.0, 1.0])):
        prof = get_profile("nano", code_reward=rule, prompts_per_step=1, num_generations=2)
        model, tok = _load_policy(prof, "cpu")
        problems = [{"problem": "What is 1+1?", "answer": "2"}]
        trainer = build_trainer(prof, model, tok, problems, tmp_path / rule, 1, progress=False)
        code = trainer.reward_funcs[1]
        assert code.__name__ == "code_reward"
        assert code([None, None], n_calls_ok=[0, 1], n_calls_formed=[1, 1]) == paid


def test_a_close_tag_without_an_open_one_is_not_a_well_formed_call():
    from deepmath_lib.agent import run_trajectory
    from deepmath_lib.backends import Backend, cut_at_stop
    from deepmath_lib.nano import build_tokenizer
    from deepmath_lib.profiles import Sampling

    tok = build_tokenizer()
    script = ["print(1)\n</tool_call>", "<tool_call>\n1/0\n</tool_call>", "\\boxed{1}<|im_end|>"]

    class Scripted(Backend):
        tokenizer = tok
        eos_ids = (tok.convert_tokens_to_ids("<|im_end|>"),)

        async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
            new = tok.encode(script.pop(0), add_special_tokens=False)
            return cut_at_stop(tok, new, stop, self.eos_ids, max_new_tokens)

    prompt = tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    traj = asyncio.run(
        run_trajectory(Scripted(), prompt, get_profile("nano"), Sampling(max_model_tokens=200))
    )
    assert len(traj.calls) == 2 and traj.n_calls_formed == 1 and traj.n_calls_ok == 0


def test_rollouts_pass_formed_calls_and_cut_long_prompts():
    from deepmath_lib.backends import Backend, cut_at_stop
    from deepmath_lib.grpo import make_rollout_func
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    seen = []

    class Answer(Backend):
        tokenizer = tok
        eos_ids = (tok.convert_tokens_to_ids("<|im_end|>"),)

        async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
            seen.append(list(ids))
            new = tok.encode("\\boxed{2}<|im_end|>", add_special_tokens=False)
            return cut_at_stop(tok, new, stop, self.eos_ids, max_new_tokens)

    class Trainer:
        processing_class = tok
        temperature = 1.0

    prof = get_profile("nano", max_prompt_length=12)
    out = make_rollout_func(prof, backend=Answer())(["What is 1+1?"], Trainer())
    full = tok.apply_chat_template([{"role": "user", "content": "What is 1+1?"}], add_generation_prompt=True)
    full = list(full["input_ids"] if hasattr(full, "keys") else full)
    assert out["prompt_ids"] == [full[-12:]] and seen == [full[-12:]]  # TRL 0.17's cut: the prompt's end
    assert out["n_calls_formed"] == [0]


def test_grpo_config_carries_the_new_settings():
    from deepmath_lib.grpo import grpo_config

    cfg = grpo_config(get_profile("paper"), "/tmp/unused", steps=1000, progress=False)
    assert (cfg.optim, cfg.sync_ref_model, cfg.ref_model_mixup_alpha, cfg.ref_model_sync_steps) == (
        "adamw_torch_fused",
        False,
        0.4,
        300,
    )
    assert cfg.vllm_max_model_length == 50_000
    nano = grpo_config(get_profile("nano"), "/tmp/unused", steps=10, progress=False)
    # nano keeps TRL's own defaults: its committed run is unchanged
    default = type(nano)(output_dir="/tmp/unused", use_cpu=True)
    for key in ("optim", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps"):
        assert getattr(nano, key) == getattr(default, key), key


# ------------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize(
    "change, shown",
    [
        ({"prompt": "ours"}, "`prompt` = `ours`"),
        ({"train_steps": 1234}, "`train_steps` 1,234"),
        ({"max_prompt_length": 2048}, "`max_prompt_length` 2,048"),
        ({"max_tokens_per_step": 2999}, "`max_tokens_per_step` 2,999"),
        ({"optim": "adamw_torch"}, "`adamw_torch`, lr"),
        ({"sync_ref_model": True}, "`sync_ref_model` on"),
        ({"ref_model_mixup_alpha": 0.5}, "α 0.5, every"),
        ({"ref_model_sync_steps": 299}, "every 299 steps"),
        ({"max_model_len": 32768}, "`max_model_len` 32,768"),
        ({"code_reward": "ran"}, "`code_reward` = `ran`: only a snippet that ran without error"),
        ({"learning_rate": 2e-6}, "lr 2e-6"),
        ({"lora_dropout": 0.05}, "dropout 0.05"),
        ({"epsilon_high": 0.3}, "`epsilon_high` 0.3"),
        ({"seed": 7}, "| 7; `fastragdev"),
        ({"save_steps": 25}, "a checkpoint every 25 steps |"),
    ],
)
def test_the_fidelity_table_shows_the_profiles_own_values(change, shown):
    from deepmath_lib.report import fidelity_block

    assert shown not in fidelity_block()
    assert shown in fidelity_block(dataclasses.replace(get_profile("paper"), **change))


def test_the_fidelity_page_carries_the_generated_table_with_the_new_rows():
    from deepmath_lib.report import fidelity_block

    readme = (REPO_ROOT / "docs" / "fidelity.md").read_text()
    assert f"<!-- fidelity:start -->\n{fidelity_block()}\n<!-- fidelity:end -->" in readme
    for row in (
        "| prompt |",
        "| training length |",
        "| prompt length (GRPO) |",
        "| reference-model sync |",
        "| context (eval) |",
        "`max_completion_length: 3000`",
        "`adamw_torch_fused`",
        "`dev_split: 150`",
        "`max_steps: -1`",
        "`ref_model_mixup_alpha: 0.4`",
        "`ref_model_sync_steps: 300`",
    ):
        assert row in readme, row
