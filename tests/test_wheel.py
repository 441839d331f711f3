"""The non-editable install (Colab's `pip install git+…`, a Space, `pip install .`): the wheel carries every file a
command reads (the reference table, the shipped nano weights, the held-out set), and the notebook commands run from
it in a folder with no checkout, writing their outputs under that folder's `runs/` and nothing into the package.

The installed package gets the test environment's dependencies (`pip install --no-deps --target`, then the same
interpreter), so no download is needed; the cache is the machine's per-user one, so smol's GGUF conversion is shared
with the checkout's tests and runs once per machine."""

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.plots import FIGURE_FILES


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("dist")
    had_build_dir = (REPO_ROOT / "build").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not had_build_dir:  # setuptools stages the files in <repo>/build; leave the checkout as it was
        shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("deepmath_nb-*.whl")
    return whl


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own (its dependencies: this test environment's)."""
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return site


def _env(site) -> dict:
    """Only the installed package on the path; the user's home (and DEEPMATH_CACHE, if set) for the cache."""
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    env |= {"PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false", "HOME": os.path.expanduser("~")}
    env |= {k: os.environ[k] for k in ("DEEPMATH_CACHE", "XDG_CACHE_HOME") if k in os.environ}
    return env


def _snapshot(folder) -> dict:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_wheel_carries_the_reference_table_the_weights_and_the_heldout_set(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "deepmath_lib/data/original_results.csv" in names
    assert "deepmath_lib/data/heldout/heldout200.jsonl" in names  # smol's evaluation set
    for model in ("nano-base", "nano-grpo"):
        for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
            assert f"deepmath_lib/weights/{model}/{f}" in names, (model, f)
    assert "deepmath_lib/weights/nano-base/COMPLETE" in names  # the recipe hash the library checks
    for f in ("adapter_model.safetensors", "adapter_config.json", "prompt.json", "tokenizer.json"):
        assert f"deepmath_lib/weights/smol-grpo/{f}" in names, f  # smol's GRPO-trained LoRA adapter
    assert "deepmath_lib/nano/build.py" in names and "deepmath_lib/bench/grading.py" in names


def test_figures_from_the_installed_wheel_outside_the_checkout(site, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    figs = work / "runs" / "nano" / "figures"  # the default outside a checkout: the profile's output root
    script = (
        "import sys, deepmath_lib, deepmath_lib.datasets as d, deepmath_lib.models as m, deepmath_lib.profiles as p\n"
        f"assert deepmath_lib.__file__.startswith({str(site)!r}), deepmath_lib.__file__\n"
        "print(len(d.load_reference()))\n"
        "print(m.model_dir(p.get_profile('nano')))\n"
        "from deepmath_lib.cli import main\n"
        f"sys.exit(main(['figures', '--profile', 'nano', '--results-root', {str(REPO_ROOT / 'data' / 'results')!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=work, env=_env(site), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert int(lines[0]) > 0  # the original's table, read from the package
    assert lines[1].startswith(str(site)) and lines[1].endswith("nano-base")  # shipped weights, no build
    drawn = sorted(f.name for f in figs.glob("*.png"))
    assert drawn == sorted(FIGURE_FILES.values()), drawn


@pytest.mark.parametrize("args", [("report", "--check"), ("pipeline", "--only", "01"), ("bench", "space")])
def test_checkout_tools_say_they_need_a_checkout(site, tmp_path, args):
    """report, pipeline and bench space read the repo's README, notebooks and Space: from a wheel they stop with one
    line instead of looking for them in site-packages."""
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath_lib.cli", *args],
        cwd=tmp_path,
        env=_env(site),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "source checkout" in proc.stderr


@pytest.mark.slow
def test_notebook_commands_run_from_the_wheel_in_a_folder_without_a_checkout(site, tmp_path):
    """solve, eval and train (with a small held-out check) on nano, then eval on smol, each as a new user types it
    in an empty folder: outputs land in ./runs/, the installed package is left exactly as pip wrote it."""
    work = tmp_path / "work"
    work.mkdir()
    before = _snapshot(site)
    timings = {}

    def deepmath(*args: str, timeout: int = 900) -> str:
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "deepmath_lib.cli", *args],
            cwd=work,
            env=_env(site),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        timings[" ".join(args[:3])] = round(time.time() - t0)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import deepmath_lib; print(deepmath_lib.__file__)"],
        cwd=work,
        env=_env(site),
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where  # the wheel, not the checkout

    out = deepmath("solve", "What is 4821*37?", "--profile", "nano")
    assert out.strip().splitlines()[-1].startswith("answer: ")

    deepmath("eval", "--profile", "nano", "--n-problems", "2", "--samples", "2")
    nano = work / "runs" / "nano"
    rows = (nano / "eval_summary.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,config,k,maj_at_k") and len(rows) == 1 + 4  # the four configurations
    assert (
        len((nano / "samples" / "nano__agent.jsonl").read_text().splitlines()) == 2 * 2
    )  # problems x samples

    out = deepmath("train", "--profile", "nano", "--steps", "1", "--heldout", "4")
    summary = json.loads(out.strip().splitlines()[-1])
    assert (
        summary["steps"] == 1 and 0 <= summary["accuracy_before"] <= 1 and 0 <= summary["accuracy_after"] <= 1
    )
    assert (work / "runs" / "nano" / "grpo" / "final" / "config.json").is_file()
    assert json.loads((nano / "train_summary.json").read_text())["steps"] == 1

    deepmath("eval", "--profile", "smol", "--n-problems", "2", "--configs", "agent", "deepmath", timeout=1500)
    smol = work / "runs" / "smol"
    rows = (smol / "eval_summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and all(
        r.startswith("heldout200,") for r in rows[1:]
    )  # the held-out set, shipped
    # DeepMath ran the adapter shipped in the wheel: the committed samples' fingerprint
    meta = json.loads((smol / "samples" / "heldout200__deepmath.meta.json").read_text())
    committed = REPO_ROOT / "data" / "results" / "smol" / "samples" / "heldout200__deepmath.meta.json"
    assert meta == json.loads(committed.read_text())

    after = _snapshot(site)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[
        :10
    ]  # nothing written in the package
    print("wheel commands (s):", timings)
