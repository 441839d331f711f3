"""smol's GRPO-trained LoRA adapter, shipped in the package (`deepmath_lib/weights/smol-grpo`): what it is, that
`solve`, `eval` and the Space use it by default, and that evaluating it reproduces the committed DeepMath samples.
(That the committed smol samples carry its fingerprint: tests/test_evaluate.py.)"""

import csv
import json
import subprocess
import sys

import pytest

from deepmath_lib import models
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.profiles import SHIPPED_WEIGHTS, get_profile
from deepmath_lib.prompts import PROMPT_RECORD

SMOL = get_profile("smol")
ADAPTER = SHIPPED_WEIGHTS / "smol-grpo"
# SmolLM2-135M: 30 decoder layers, each with 7 linear layers (q, k, v, o, gate, up, down); LoRA "all-linear" puts
# an A and a B matrix on each
LORA_TENSORS = 30 * 7 * 2


def test_smol_trained_weights_default_to_the_shipped_adapter(tmp_path):
    assert SMOL.released_weights == str(ADAPTER)
    assert models.trained_model_path(SMOL, work_dir=tmp_path / "no-runs") == str(ADAPTER)
    assert models.is_adapter(str(ADAPTER), SMOL)
    assert models.split_weights(SMOL, str(ADAPTER)) == (models.model_dir(SMOL), str(ADAPTER))
    assert (
        models.describe_weights(SMOL, str(ADAPTER))
        == "GRPO-trained weights shipped with the package (smol-grpo)"
    )


def test_shipped_adapter_is_the_profiles_lora_in_bf16_naming_no_local_path():
    import torch
    from safetensors import safe_open

    config = json.loads((ADAPTER / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (
        SMOL.lora_r,
        SMOL.lora_alpha,
        SMOL.use_rslora,
    )
    assert config["base_model_name_or_path"] == f"{SMOL.gguf_requirement}:{SMOL.gguf_file}"
    assert not any(isinstance(v, str) and v.startswith(("/", "~")) for v in config.values())  # no local path
    weights = ADAPTER / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert len(tensors) == LORA_TENSORS
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())
    # trained: GRPO moved the B matrices away from their zero initialisation
    assert all(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)
    assert weights.stat().st_size < 32 * 2**20  # bf16: about 19 MB
    # the prompt the adapter was trained with, which evaluating it uses
    assert json.loads((ADAPTER / PROMPT_RECORD).read_text())["prompt"] == SMOL.prompt


@pytest.mark.timeout(1200)
def test_eval_of_the_shipped_adapter_reproduces_the_committed_deepmath_row(tmp_path):
    """`deepmath eval --profile smol --configs deepmath` on the shipped adapter (named, so that a local training run
    in this checkout cannot stand in for it), run as a user types it: the adapter gives the committed DeepMath samples, trace for trace, and the same summary row.
    All 200 problems: the engine's greedy traces are reproducible for one set of trajectories, but in bfloat16 a
    row's logits depend on which rows share its batch, so a subset would batch differently."""
    if not models.bf16_fast("cpu"):
        pytest.skip(
            "the committed smol samples were made in bfloat16 (a CPU with AVX512-BF16 or AMX); this CPU loads smol "
            "in float32, whose greedy traces differ"
        )
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath_lib.cli", "eval", "--profile", "smol", "--configs", "deepmath"]
        + ["--trained-model", str(ADAPTER), "--results-root", str(results)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    committed = REPO_ROOT / "data" / "results" / "smol"
    name = "heldout200__deepmath"
    meta = f"samples/{name}.meta.json"
    assert json.loads((results / "smol" / meta).read_text()) == json.loads((committed / meta).read_text())
    got = {r["problem_id"]: r for r in _read(results / "smol" / "samples" / f"{name}.jsonl")}
    want = {r["problem_id"]: r for r in _read(committed / "samples" / f"{name}.jsonl")}
    assert got.keys() == want.keys() and len(got) == SMOL.heldout_problems
    differ = [
        pid for pid in want if (got[pid]["text"], got[pid]["pred"]) != (want[pid]["text"], want[pid]["pred"])
    ]
    assert not differ, f"{len(differ)} traces differ, e.g. {differ[:5]}"
    assert _row(results / "smol" / "eval_summary.csv") == _row(committed / "eval_summary.csv")


def _row(path, config="deepmath"):
    with open(path) as f:
        return next(r for r in csv.DictReader(f) if r["config"] == config)


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
