"""scripts/gpu_check.py, the prepared GPU check, run here in its CPU `--tiny` form: a tiny Qwen3 of the same
architecture through the same parts (threaded generate + agent loop, sandbox, GRPO steps via build_trainer with the
paper profile, one forward+backward through TRL's loss), one JSON line on stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_gpu_check_tiny_runs_every_part_on_cpu(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny", "--steps", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, (
        f"stdout must be one JSON line, got {proc.stdout!r}\nstderr:\n{proc.stderr[-4000:]}"
    )
    report = json.loads(lines[0])
    assert report["errors"] == {}, f"{report['errors']}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0
    assert report["tiny"] is True and report["cuda"] is False
    assert report["grpo_steps_ok"] is True
    assert report["thread_generate_ok"] is True
    assert report["sandbox_ok"] is True
    assert len(report["step_seconds"]) == 2
    assert report["grpo_config"]["gradient_checkpointing"] is True
    assert report["lora_trainable_params_m"] > 0
    # half of the trajectories made a (scripted) code call: the tool path and the env mask were exercised
    assert report["scripted_calls"] > 0 and any(m["reward_code"] > 0 for m in report["grpo_metrics"])
    assert report["paper_shape"]["seconds"] >= 0
