"""Two training processes (`accelerate launch`, CPU, gloo) on nano with the transformers backend: a step is still
the profile's number of completions, every rank generates its share, and metrics and summaries are written once."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_process_accelerate_launch_writes_metrics_once(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "deepmath_lib.cli", "train"]
    cmd += ["--profile", "nano", "--steps", "2", "--heldout", "8", "--train-problems", "64"]
    cmd += ["--output-dir", str(tmp_path / "grpo"), "--results-root", str(tmp_path / "results")]
    env = dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=880)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"')]  # JSON, not the trainer logs
    assert len(lines) == 1  # the summary line, from the main process only
    summary = json.loads(lines[0])
    assert summary["steps"] == 2
    rows = list(csv.DictReader((tmp_path / "grpo" / "train_metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]  # once per step, not once per rank
    assert out.stdout.count("held-out check before") == 1 and out.stdout.count("held-out check after") == 1
    stored = json.loads((tmp_path / "results" / "nano" / "train_summary.json").read_text())
    assert stored["heldout_problems"] == 8 and stored["steps"] == 2
