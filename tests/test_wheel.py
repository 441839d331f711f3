"""The non-editable install (Colab's `pip install git+…`, a Space): the wheel carries the reference table and the
shipped nano weights, and the figures step runs from it outside the checkout."""

import subprocess
import sys
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


def test_wheel_carries_the_reference_table_and_the_shipped_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "deepmath_lib/data/original_results.csv" in names
    for model in ("nano-base", "nano-grpo"):
        for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
            assert f"deepmath_lib/weights/{model}/{f}" in names, (model, f)
    assert "deepmath_lib/weights/nano-base/COMPLETE" in names  # the recipe hash the library checks
    assert "deepmath_lib/nano/build.py" in names and "deepmath_lib/bench/grading.py" in names


def test_figures_from_the_installed_wheel_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figs, work = tmp_path / "figs", tmp_path / "elsewhere"
    work.mkdir()
    script = (
        "import sys, deepmath_lib, deepmath_lib.datasets as d, deepmath_lib.models as m, deepmath_lib.profiles as p\n"
        f"assert deepmath_lib.__file__.startswith({str(site)!r}), deepmath_lib.__file__\n"
        "print(len(d.load_reference()))\n"
        "print(m.model_dir(p.get_profile('nano')))\n"
        "from deepmath_lib.cli import main\n"
        f"sys.exit(main(['figures', '--profile', 'nano', '--results-root', {str(REPO_ROOT / 'data' / 'results')!r},"
        f" '--figures-dir', {str(figs)!r}]))\n"
    )
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert int(lines[0]) > 0  # the original's table, read from the package
    assert lines[1].startswith(str(site)) and lines[1].endswith("nano-base")  # shipped weights, no build
    drawn = sorted(f.name for f in figs.glob("*.png"))
    assert drawn == sorted(FIGURE_FILES.values()), drawn
