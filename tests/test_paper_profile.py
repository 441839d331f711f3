"""The paper profile: faithful to the original's recipe, the right weights in each configuration, batch shape from
the world size, importance sampling set knowingly, failed generations never stored, metrics written once."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from deepmath_lib.profiles import Sampling, get_profile

PAPER = get_profile("paper")

# The original's settings (IntelLabs/DeepMath), as facts; README "Fidelity" names each deliberate deviation.
ORIGINAL = {
    "max_calls": 50,  # agent steps
    "max_tokens_per_step": 3000,
    "sandbox_timeout": 20.0,
    "lora_r": 32,
    "lora_alpha": 16,
    "use_rslora": True,
    "lora_dropout": 0.1,
    "learning_rate": 1e-6,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "weight_decay": 0.001,
    "epsilon_high": 0.4,
    "loss_type": "bnpo",
    "beta": 0.04,  # TRL 0.17's default
    "num_generations": 4,
    "seed": 42,
    "temperature_start": 1.2,
    "temperature_end": 0.7,
    "temperature_steps": 1000,
    "reward_weights": (0.1, 1.0),
    "train_data": "fastragdev/openmathreasoning-tir",
    "eval_samples": 16,
    "prompt": "original",  # its own prompt, read from its files at run time
    "code_reward": "called",  # code_format_reward: any <tool_call>...</tool_call>
    "optim": "adamw_torch_fused",
    "ref_model_mixup_alpha": 0.4,
    "ref_model_sync_steps": 300,
    "max_model_len": 50_000,  # its agent evaluation's vLLM context
}


@pytest.mark.parametrize("key", sorted(ORIGINAL))
def test_paper_profile_matches_the_original(key):
    assert getattr(PAPER, key) == ORIGINAL[key]


def test_paper_sampling_matches_the_original():
    assert PAPER.train_sampling == Sampling(temperature=1.2, top_p=0.8, top_k=50, max_model_tokens=5000)
    assert PAPER.eval_sampling == Sampling(temperature=0.6, top_p=0.95, top_k=20, max_model_tokens=20000)
    assert PAPER.prompts_per_step * PAPER.num_generations == 16  # completions per optimizer step
    assert PAPER.max_model_len >= 20000 + 2000  # eval budget + prompt fit the engine's context


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_a_step_is_16_completions_on_any_gpu_count(world):
    from deepmath_lib.grpo import batch_shape

    per_device, accum = batch_shape(PAPER, world)
    assert per_device * accum * world == 16
    assert per_device <= PAPER.per_device_batch


def test_batch_shape_names_an_impossible_split():
    from deepmath_lib.grpo import batch_shape

    with pytest.raises(ValueError, match="do not split over 3 processes"):
        batch_shape(PAPER, 3)


def test_grpo_config_of_the_paper_profile():
    from deepmath_lib.grpo import grpo_config

    cfg = grpo_config(PAPER, "/tmp/unused", steps=1000, progress=False)
    assert (cfg.loss_type, cfg.epsilon_high, cfg.weight_decay, cfg.beta) == ("bnpo", 0.4, 0.001, 0.04)
    assert (cfg.top_p, cfg.top_k, cfg.max_completion_length, cfg.seed) == (0.8, 50, 5000, 42)
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 16
    assert cfg.use_vllm and cfg.vllm_mode == "colocate"
    assert cfg.vllm_max_model_length == PAPER.max_model_len
    assert cfg.vllm_gpu_memory_utilization == PAPER.vllm_train_memory_utilization
    # top-k/top-p filtered sampling: vLLM's processed log-probs would bias TRL's ratio, so no correction
    assert cfg.vllm_importance_sampling_correction is False


def test_importance_sampling_on_only_without_filtering():
    from deepmath_lib.grpo import importance_sampling_kwargs

    assert importance_sampling_kwargs(PAPER) == {"vllm_importance_sampling_correction": False}
    nano = get_profile("nano")  # T only, no top-k/top-p: vLLM's and the trainer's log-probs agree
    assert importance_sampling_kwargs(nano)["vllm_importance_sampling_correction"] is True
    off = dataclasses.replace(nano, vllm_importance_sampling_mode=None)
    assert importance_sampling_kwargs(off) == {"vllm_importance_sampling_correction": False}


# ------------------------------------------------------------------------------------------------ weights


def test_base_configurations_never_get_the_released_adapter(tmp_path):
    from deepmath_lib.models import split_weights, trained_model_path

    assert split_weights(PAPER, None) == ("Qwen/Qwen3-4B-Thinking-2507", None)
    # the trained rows: this repo's GRPO output when there is one, else the released adapter on the base model
    assert trained_model_path(PAPER, work_dir=tmp_path) == PAPER.released_weights
    assert split_weights(PAPER, "Intel/deepmath-v1") == ("Qwen/Qwen3-4B-Thinking-2507", "Intel/deepmath-v1")
    out = tmp_path / "paper" / "grpo" / "final"
    out.mkdir(parents=True)
    (out / "adapter_config.json").write_text(json.dumps({"r": 32}))
    assert trained_model_path(PAPER, work_dir=tmp_path) == str(out)
    assert split_weights(PAPER, str(out)) == ("Qwen/Qwen3-4B-Thinking-2507", str(out))


def test_grpo_starts_from_the_base_model_even_with_released_weights():
    """A profile with a released adapter (which does not even exist here) still loads its plain base model for
    GRPO and for the base configurations: the adapter would fail to load if it were applied."""
    import torch

    from deepmath_lib.grpo import _load_policy

    prof = get_profile("nano", released_weights="nobody/no-such-adapter")
    model, _ = _load_policy(prof, "cpu")
    ref, _ = _load_policy(get_profile("nano"), "cpu")
    for (n, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_trained_model_takes_a_path_or_a_hub_id(tmp_path):
    from deepmath_lib.models import check_weights_arg

    check_weights_arg("Intel/deepmath-v1")
    check_weights_arg(str(tmp_path))
    for bad in ("./no/such/dir", "/abs/missing", "no-slash", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="neither a folder nor a hub id"):
            check_weights_arg(bad)


def test_eval_paper_before_any_training_gets_past_the_weights(tmp_path, capsys):
    """`deepmath eval --profile paper` with no local GRPO output uses the released adapter for grpo/deepmath: it
    fails only where the data is (offline here), not for want of a trained model."""
    from deepmath_lib.cli import eval_main

    rc = eval_main(profile="paper", datasets=[str(tmp_path / "missing.jsonl")], results_root=str(tmp_path))
    err = capsys.readouterr().err
    assert rc == 2 and "missing.jsonl" in err and "no trained model" not in err


# ------------------------------------------------------------------------------------------------ failures


class Flaky:
    """A backend that raises for some trajectories (a dead engine, an OOM) and answers the others."""

    def __init__(self, tok, fail_tags=()):
        from deepmath_lib.backends import Backend, cut_at_stop

        outer = self

        class _B(Backend):
            async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
                if tag in outer.fail_tags:
                    raise RuntimeError("engine died")
                new = tok.encode("\\boxed{7}<|im_end|>", add_special_tokens=False)
                return cut_at_stop(tok, new, stop, self.eos_ids, max_new_tokens)

        self.fail_tags = set(fail_tags)
        self.backend = _B()
        self.backend.tokenizer = tok
        self.backend.eos_ids = (tok.convert_tokens_to_ids("<|im_end|>"),)


def _problems(n):
    return [{"id": f"p{i}", "problem": f"What is {i}+7-{i}?", "answer": "7"} for i in range(n)]


def test_a_failed_generation_is_not_stored_and_a_rerun_retries_it(tmp_path):
    from deepmath_lib.evaluate import run_config
    from deepmath_lib.nano import build_tokenizer
    from deepmath_lib.results import ResultStore, samples_path

    tok = build_tokenizer()
    prof = get_profile("nano")
    probs = _problems(20)
    flaky = Flaky(tok, fail_tags={3})
    ran = run_config(flaky.backend, prof, "toy", probs, "baseline", 1, tmp_path, False, "fp")
    assert ran == 19
    path = samples_path("nano", "toy", "baseline", tmp_path)
    assert len(ResultStore(path).done_keys()) == 19
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert all(r["finish_reason"] != "error" for r in rows) and "p3" not in {r["problem_id"] for r in rows}
    ran = run_config(Flaky(tok).backend, prof, "toy", probs, "baseline", 1, tmp_path, False, "fp")
    assert ran == 1 and len(ResultStore(path).done_keys()) == 20


def test_a_run_stops_with_a_clear_error_past_the_failure_threshold(tmp_path):
    from deepmath_lib.evaluate import GenerationFailed, run_config
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    dead = Flaky(tok, fail_tags=set(range(100)))
    with pytest.raises(GenerationFailed, match="generations failed .*engine died"):
        run_config(dead.backend, get_profile("nano"), "toy", _problems(20), "agent", 1, tmp_path, False, "fp")


def test_rollouts_refuse_to_train_on_failed_generations():
    from deepmath_lib.grpo import make_rollout_func
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()

    class Trainer:
        processing_class = tok
        temperature = 1.0

    rollout = make_rollout_func(get_profile("nano"), backend=Flaky(tok, fail_tags={0}).backend)
    with pytest.raises(RuntimeError, match="rollouts failed"):
        rollout(["What is 1+1?", "What is 2+2?"], Trainer())


# ------------------------------------------------------------------------------------------------ agent steps


def test_a_step_is_capped_and_the_next_step_goes_on():
    from deepmath_lib.agent import run_trajectory
    from deepmath_lib.backends import Backend, cut_at_stop
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    asked = []

    class Long(Backend):
        tokenizer = tok
        eos_ids = (tok.convert_tokens_to_ids("<|im_end|>"),)

        async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
            asked.append(max_new_tokens)
            new = tok.encode("a" * 50, add_special_tokens=False)
            return cut_at_stop(tok, new, stop, self.eos_ids, max_new_tokens)

    prof = get_profile("nano", max_tokens_per_step=10, max_calls=3)
    traj = asyncio.run(run_trajectory(Long(), [1, 2], prof, Sampling(max_model_tokens=100)))
    assert asked == [10, 10, 10]  # three steps of at most 10 tokens, then the step cap (max_calls) ends it
    assert traj.finish_reason == "calls" and traj.model_tokens == 30
    prof = get_profile("nano", max_tokens_per_step=10, max_calls=50)
    asked.clear()
    traj = asyncio.run(run_trajectory(Long(), [1, 2], prof, Sampling(max_model_tokens=25)))
    assert asked == [10, 10, 5] and traj.finish_reason == "budget"


# ------------------------------------------------------------------------------------------------ ranks


def test_metrics_are_written_by_the_main_process_only(tmp_path):
    from types import SimpleNamespace

    from deepmath_lib.grpo import _callbacks

    _, log = _callbacks(get_profile("nano"), tmp_path / "m.csv")
    logs = {"reward": 1.0, "rewards/accuracy_reward/mean": 0.5, "rewards/code_reward/mean": 1.0}
    log.on_log(None, SimpleNamespace(global_step=1, is_world_process_zero=False), None, logs=logs)
    assert not (tmp_path / "m.csv").exists()
    log.on_log(None, SimpleNamespace(global_step=1, is_world_process_zero=True), None, logs=logs)
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 2


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--profile", "nano", "--heldout", "-1"], "argument --heldout: must be an integer >= 1"),
        (
            ["train", "--profile", "nano", "--train-problems", "0"],
            "argument --train-problems: must be an integer >= 1",
        ),
        (["bench", "rollouts", "--profile", "nano", "--backend", "openai"], "--base-url"),
        (["solve", "What is 1+1?", "--profile", "nano", "--backend", "openai"], "--base-url"),
        (["eval", "--profile", "nano", "--trained-model", "./no/such/dir"], "neither a folder nor a hub id"),
    ],
)
def test_new_options_answer_bad_input_with_one_clear_error(argv, needle, capsys, tmp_path):
    from deepmath_lib.cli import main

    if argv[0] == "eval":
        argv = [*argv, "--results-root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_report_with_an_unknown_block_is_a_clear_error(tmp_path, capsys):
    from deepmath_lib.cli import report_main

    readme = tmp_path / "README.md"
    text = "# a page\n<!-- gpu_typo:start -->\nold\n<!-- gpu_typo:end -->\n"
    readme.write_text(text)
    assert report_main(readme=readme) == 2
    assert "no source makes the block 'gpu_typo'" in capsys.readouterr().err
    assert readme.read_text() == text  # left as it was
