"""GRPO with agentic rollouts: env mask, loss exclusion of executor tokens, the temperature schedule reaching the
training log-probs, rewards, and a tiny end-to-end training step on CPU."""

import csv

import pytest
import torch

from deepmath_lib.grpo import build_trainer, make_rollout_func, scheduled_temperature, set_temperature
from deepmath_lib.nano import build_tokenizer, generate_problems
from deepmath_lib.profiles import Sampling, get_profile
from deepmath_lib.rewards import accuracy_reward, code_reward

EOS = "<|im_end|>"


def tiny_model(tok, seed=0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return Qwen3ForCausalLM(cfg)


@pytest.fixture()
def setup(tmp_path):
    tok = build_tokenizer()
    prof = get_profile(
        "nano",
        prompts_per_step=2,
        num_generations=4,
        train_sampling=Sampling(temperature=1.0, top_p=1.0, top_k=0, max_model_tokens=24),
        temperature_steps=4,
        save_steps=1000,
    )
    model = tiny_model(tok)
    problems = generate_problems(8, split="train")
    trainer = build_trainer(prof, model, tok, problems, tmp_path / "out", steps=2, progress=False)
    return prof, tok, model, trainer, tmp_path


class Scripted:
    """A backend that answers every trajectory with the same script (a call, then text)."""

    def __init__(self, tok, script):
        from deepmath_lib.backends import Backend, cut_at_stop

        class _B(Backend):
            async def generate(self_, ids, max_new_tokens, sampling, stop, tag=0):
                n = self_.calls.get(tag, 0)
                self_.calls[tag] = n + 1
                text = script[n] if n < len(script) else EOS
                new = tok.encode(text, add_special_tokens=False)
                return cut_at_stop(tok, new, stop, self_.eos_ids, max_new_tokens)

        self.backend = _B()
        self.backend.tokenizer = tok
        self.backend.eos_ids = (tok.convert_tokens_to_ids(EOS),)
        self.backend.calls = {}


def test_rollout_env_mask_is_zero_exactly_on_executor_tokens(setup):
    prof, tok, model, trainer, _ = setup
    script = ["<tool_call>\nprint(6*7)\n</tool_call>", "\\boxed{42}" + EOS]
    rollout = make_rollout_func(prof, backend=Scripted(tok, script).backend)
    out = rollout(["What is 6*7?"], trainer)
    ids, mask = out["completion_ids"][0], out["env_mask"][0]
    executor = tok.decode([t for t, m in zip(ids, mask, strict=True) if m == 0])
    model_text = tok.decode([t for t, m in zip(ids, mask, strict=True) if m == 1], skip_special_tokens=False)
    assert executor == prof.output_template.format(output="42")
    assert "```output" not in model_text and "<tool_call>" in model_text
    assert out["n_calls_ok"] == [1] and out["pred"] == ["42"] and out["logprobs"] is None


def _grads(trainer, model, completion, tool_mask, prompt):
    model.zero_grad()
    inputs = {
        "prompt_ids": torch.tensor([prompt]),
        "prompt_mask": torch.ones(1, len(prompt), dtype=torch.long),
        "completion_ids": torch.tensor([completion]),
        "completion_mask": torch.ones(1, len(completion), dtype=torch.long),
        "tool_mask": torch.tensor([tool_mask]),
        "advantages": torch.tensor([1.0]),
        "num_items_in_batch": torch.tensor(sum(tool_mask)),
    }
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()


def test_executor_tokens_are_excluded_from_the_loss(setup):
    prof, tok, model, trainer, _ = setup
    prompt = tok.encode(
        "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
    )
    gen = tok.encode("<tool_call>\nprint(6*7)\n</tool_call>", add_special_tokens=False)
    block_a = tok.encode(prof.output_template.format(output="42"), add_special_tokens=False)
    block_b = tok.encode(prof.output_template.format(output="17"), add_special_tokens=False)
    assert len(block_a) == len(block_b) and block_a != block_b
    model.train()
    # The executor block ends the completion, so it is context for no model token: if it is masked out of the
    # loss, changing it cannot change the gradient.
    mask = [1] * len(gen) + [0] * len(block_a)
    g_a = _grads(trainer, model, gen + block_a, mask, prompt)
    g_b = _grads(trainer, model, gen + block_b, mask, prompt)
    assert torch.allclose(g_a, g_b, atol=0, rtol=0)
    # Control: without the mask the same change does move the gradient.
    ones = [1] * len(mask)
    assert not torch.allclose(
        _grads(trainer, model, gen + block_a, ones, prompt),
        _grads(trainer, model, gen + block_b, ones, prompt),
    )


def test_scheduled_temperature_reaches_training_logprobs(setup):
    prof, tok, model, trainer, _ = setup
    assert scheduled_temperature(0, prof) == pytest.approx(1.2)
    assert scheduled_temperature(2, prof) == pytest.approx(0.95)
    assert scheduled_temperature(99, prof) == pytest.approx(0.7)
    ids = torch.tensor(
        [tok.encode("<|im_start|>user\nWhat is 12*13?<|im_end|>\nabc", add_special_tokens=False)]
    )
    attn = torch.ones_like(ids)
    keep = 5
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, -keep - 1 : -1]
    targets = ids[:, -keep:]
    for t in (0.5, 1.2):
        set_temperature(trainer, t)
        with torch.no_grad():
            logps = trainer._get_per_token_logps_and_entropies(model, ids, attn, keep)[0]
        expected = torch.log_softmax(logits / t, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(logps, expected, atol=1e-5), t
        assert trainer.temperature == t and trainer.args.temperature == t
        if getattr(trainer, "generation_config", None) is not None:
            assert trainer.generation_config.temperature == t


def test_rewards_on_hand_made_trajectories():
    golds = ["42", "\\frac{1}{2}", "7", "not parseable \\frac{"]
    preds = ["42", "0.5", None, "3"]
    assert accuracy_reward([None] * 4, answer=golds, pred=preds) == [1.0, 1.0, 0.0, None]
    assert code_reward([None] * 3, n_calls_ok=[0, 1, 3]) == [0.0, 1.0, 1.0]


def test_tiny_training_step_end_to_end(setup):
    prof, tok, model, _, tmp_path = setup
    # a real model generates the rollouts of this trainer; the rewards are then usually all zero (a random model
    # never calls the tool), so a second trainer with scripted, mixed outcomes checks that weights move.
    real = build_trainer(
        prof, model, tok, generate_problems(8, split="train"), tmp_path / "real", 1, progress=False
    )
    real.train()
    assert real.state.global_step == 1
    assert (tmp_path / "real" / "train_metrics.csv").exists()

    class Mixed(Scripted):
        def __init__(self, tok):
            super().__init__(tok, [])
            inner = self.backend.generate

            async def generate(ids, max_new_tokens, sampling, stop, tag=0):
                n = self.backend.calls.get(tag, 0)
                if tag % 2 == 0 and n == 0:
                    self.backend.calls[tag] = 1
                    new = tok.encode("<tool_call>\nprint(2+2)\n</tool_call>", add_special_tokens=False)
                    from deepmath_lib.backends import cut_at_stop

                    return cut_at_stop(tok, new, stop, self.backend.eos_ids, max_new_tokens)
                return await inner(ids, max_new_tokens, sampling, stop, tag)

            self.backend.generate = generate

    trainer = build_trainer(
        prof,
        model,
        tok,
        generate_problems(8, split="train"),
        tmp_path / "out",
        2,
        progress=False,
        backend=Mixed(tok).backend,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    rows = list(csv.DictReader(open(tmp_path / "out" / "train_metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2]
    # the temperature followed the schedule: 1.2 at step 0, 1.075 at step 1
    assert [round(float(r["temperature"]), 3) for r in rows] == [1.2, 1.075]
    for r in rows:
        assert 0.0 <= float(r["reward_code"]) <= 1.0 and float(r["mean_model_tokens"]) > 0
        # each step's wall time, split: rollouts + rewards + the rest add up to the step
        step, roll, rew, opt = (float(r[c]) for c in ("step_s", "rollout_s", "reward_s", "optimizer_s"))
        assert step > 0 and roll > 0 and rew >= 0 and opt > 0
        assert abs(roll + rew + opt - step) < 0.02


def test_unparseable_gold_skipped(capsys, tmp_path):
    from deepmath_lib import grpo

    prof = get_profile("nano")
    src = tmp_path / "train.jsonl"
    src.write_text(
        '{"id": "a", "problem": "p", "answer": "3"}\n{"id": "bad-1", "problem": "q", "answer": "???"}\n'
    )
    out = grpo.train_problems(prof, n=2, source=str(src))
    assert [r["id"] for r in out] == ["a"]
    assert "bad-1" in capsys.readouterr().out


def test_training_problems_are_deduplicated_and_shuffled_by_seed(tmp_path):
    """OpenMathReasoning repeats each problem many times, in order: dedupe, then a seeded shuffle."""
    from deepmath_lib import grpo

    src = tmp_path / "omr.jsonl"
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(20) for _ in range(5)]
    src.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    a = grpo.train_problems(get_profile("nano", seed=1), n=10, source=str(src))
    b = grpo.train_problems(get_profile("nano", seed=1), n=10, source=str(src))
    c = grpo.train_problems(get_profile("nano", seed=2), n=10, source=str(src))
    assert len(a) == 10 and len({r["problem"] for r in a}) == 10
    assert [r["problem"] for r in a] == [r["problem"] for r in b]
    assert [r["problem"] for r in a] != [r["problem"] for r in c]
    assert [r["problem"] for r in a] != [f"What is {i} + {i}?" for i in range(10)]  # not the file's order


def test_training_curves_reach_a_local_trackio_project(tmp_path):
    """`deepmath train --report-to trackio`: the per-step metrics land in a local trackio database (no Space, no
    network). Run in a fresh interpreter: trackio reads TRACKIO_DIR when it is imported."""
    import json
    import os
    import subprocess
    import sys

    from deepmath_lib.paths import REPO_ROOT

    pytest.importorskip("trackio")
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
from test_grpo import tiny_model
from deepmath_lib.grpo import build_trainer
from deepmath_lib.nano import build_tokenizer, generate_problems
from deepmath_lib.profiles import Sampling, get_profile
prof = get_profile("nano", prompts_per_step=2, num_generations=4, save_steps=1000,
                   train_sampling=Sampling(temperature=1.0, top_p=1.0, top_k=0, max_model_tokens=24))
tok = build_tokenizer()
trainer = build_trainer(prof, tiny_model(tok), tok, generate_problems(8, split="train"), {str(tmp_path / "out")!r}, 1,
                        progress=False, report_to="trackio")
trainer.train()
from trackio.sqlite_storage import SQLiteStorage
runs = SQLiteStorage.get_runs("deepmath-nano")
logs = SQLiteStorage.get_logs("deepmath-nano", runs[0])
print(json.dumps({{"runs": len(runs), "keys": sorted(set().union(*[set(r) for r in logs]))}}))
"""
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runs"] == 1
    assert {"train/reward", "train/loss"} <= set(out["keys"]), out["keys"]
