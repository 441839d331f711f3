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


RANK_SCRIPT = """
import json
import torch
import torch.distributed as dist
from deepmath_lib.grpo import grpo_config, init_distributed
from deepmath_lib.profiles import get_profile

prof = get_profile("nano", process_group_timeout_s=4321)
state = init_distributed(prof)
row = {{"rank": state.process_index, "world": state.num_processes, "backend": state.backend}}
row["timeout_s"] = dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
row["ddp_timeout"] = grpo_config(prof, {out!r}, steps=1, progress=False).ddp_timeout
# the trainer's arguments rebuild accelerate's state; the group, and its timeout, stay as they were
grpo_config(prof, {out!r}, steps=1, progress=False, ddp_timeout=60)
row["timeout_after_s"] = dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
dist.barrier()
print(json.dumps(row))
dist.destroy_process_group()
"""


@pytest.mark.timeout(300)
def test_process_group_is_created_with_the_profile_timeout(tmp_path):
    """Two gloo ranks (no GPU): `init_distributed` creates the process group with the profile's
    `process_group_timeout_s`, read back from each rank's gloo backend right away; TRL's `ddp_timeout` gets the
    same value, and the trainer's arguments (which rebuild accelerate's state) leave the group's timeout as it is."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = RANK_SCRIPT.format(out=str(tmp_path / "grpo"))
    procs = []
    for rank in range(2):
        env = dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
        )
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    rows = sorted((json.loads(o.strip().splitlines()[-1]) for o, _ in outs), key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == [0, 1] and all(r["world"] == 2 for r in rows), rows
    for r in rows:
        assert r["backend"] == "gloo" and r["timeout_s"] == 4321 and r["ddp_timeout"] == 4321, rows
        assert r["timeout_after_s"] == 4321, rows
