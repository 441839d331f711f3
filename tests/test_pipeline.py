"""The papermill pipeline and the CLI entry: bad input gives clear errors and non-zero exits."""

import subprocess
import sys

import nbformat
import pytest

from deepmath_lib import pipeline
from deepmath_lib.cli import main as cli_main
from deepmath_lib.profiles import get_profile


def _nb(path, source):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "nano"\nquick = True')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "deepmath_lib.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("exec", "solve", "grade", "train", "eval", "figures", "bench", "pipeline"):
        assert cmd in out.stdout


def test_unknown_profile_is_named(capsys):
    assert cli_main(["pipeline", "--profile", "huge"]) == 1
    err = capsys.readouterr().err
    assert "unknown profile 'huge'" in err


def test_missing_params_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli_main(["pipeline", "--params", str(missing)]) == 1
    assert f"params file not found: {missing}" in capsys.readouterr().err


def test_unknown_notebook_prefix():
    with pytest.raises(pipeline.PipelineError, match="no notebook matches"):
        pipeline.list_notebooks(["99"])


def test_failing_notebook_named_and_kept(tmp_path):
    nb_dir, out_dir = tmp_path / "nbs", tmp_path / "runs"
    nb_dir.mkdir()
    _nb(nb_dir / "01_ok.ipynb", "x = 1\nprint(x + 1)")
    _nb(nb_dir / "02_bad.ipynb", "raise ValueError('deliberate failure')")
    _nb(nb_dir / "03_never.ipynb", "print('not reached')")
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.run_pipeline("nano", output_dir=out_dir, notebook_dir=nb_dir)
    msg = str(info.value)
    assert "02_bad.ipynb" in msg and "deliberate failure" in msg
    assert (out_dir / "01_ok.ipynb").exists() and (out_dir / "02_bad.ipynb").exists()
    assert not (out_dir / "03_never.ipynb").exists()
    executed = nbformat.read(out_dir / "01_ok.ipynb", as_version=4)
    assert any("2" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_profile_overrides():
    p = get_profile("nano", train_steps=7, eval_samples=None)
    assert p.train_steps == 7 and p.eval_samples == get_profile("nano").eval_samples
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("nano", not_a_knob=1)
    with pytest.raises(ValueError, match="unknown profile 'x'"):
        get_profile("x")
