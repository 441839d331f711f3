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
    times = {}
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.run_pipeline("nano", output_dir=out_dir, notebook_dir=nb_dir, times=times)
    assert list(times) == ["01_ok"] and times["01_ok"] > 0  # the notebooks that finished, timed
    msg = str(info.value)
    assert "02_bad.ipynb" in msg and "deliberate failure" in msg
    assert (out_dir / "01_ok_nano.ipynb").exists() and (out_dir / "02_bad_nano.ipynb").exists()
    assert not (out_dir / "03_never_nano.ipynb").exists()
    executed = nbformat.read(out_dir / "01_ok_nano.ipynb", as_version=4)
    assert any("2" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_profile_overrides():
    p = get_profile("nano", train_steps=7, eval_samples=None)
    assert p.train_steps == 7 and p.eval_samples == get_profile("nano").eval_samples
    # the quick variant (nbval's) changes only its own settings; explicit overrides still win over it
    full, quick = get_profile("nano"), get_profile("nano", quick=True)
    assert quick.train_steps == full.quick["train_steps"] < full.train_steps
    assert quick.eval_n_problems < full.eval_n_problems and quick.learning_rate == full.learning_rate
    assert get_profile("nano", quick=True, train_steps=5).train_steps == 5
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("nano", not_a_knob=1)
    with pytest.raises(ValueError, match="unknown profile 'x'"):
        get_profile("x")


def test_published_notebook_keeps_its_parameters_and_gets_stable_outputs(tmp_path):
    """`--publish`: the executed outputs go back into the committed notebook, without papermill's injected cell,
    timings or stderr, and a second run writes the same bytes."""
    nb_dir, out_dir = tmp_path / "nbs", tmp_path / "runs"
    nb_dir.mkdir()
    _nb(
        nb_dir / "01_show.ipynb",
        "import sys\nprint('quick is', quick)\nprint('noise', file=sys.stderr)\n6 * 7",
    )
    pipeline.run_pipeline(
        "nano", output_dir=out_dir, notebook_dir=nb_dir, extra_params={"quick": False}, publish=True
    )
    first = (nb_dir / "01_show.ipynb").read_bytes()
    nb = nbformat.read(nb_dir / "01_show.ipynb", as_version=4)
    assert [c.source for c in nb.cells][0] == 'profile = "nano"\nquick = True'  # its own defaults stay
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert "papermill" not in nb.metadata and all("papermill" not in c.metadata for c in nb.cells)
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "execute_result"]  # stderr dropped
    assert outputs[0].text == "quick is False\n" and outputs[1].data["text/plain"] == "42"
    assert nb.cells[1].execution_count == 2
    pipeline.run_pipeline(
        "nano", output_dir=out_dir, notebook_dir=nb_dir, extra_params={"quick": False}, publish=True
    )
    assert (nb_dir / "01_show.ipynb").read_bytes() == first


def _tracked_state(root, folders):
    """(path, blob hash) of every git-tracked file under `folders` as it is on disk now."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--", *folders], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    files = [f for f in files if f]
    hashes = subprocess.run(
        ["git", "hash-object", "--", *files], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    return dict(zip(files, hashes, strict=True))


def test_readmes_papermill_example_writes_under_runs_only(tmp_path):
    """The README's papermill example, run as a reader would (with the executed copy in a temporary folder): it
    trains and evaluates, and every committed result, figure and notebook is unchanged afterwards."""
    import re
    import shlex

    from deepmath_lib.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "papermill notebooks/03_grpo_train.ipynb" in x)
    argv = shlex.split(line.split("#")[0])
    argv[0] = str(REPO_ROOT / ".venv" / "bin" / "papermill")
    if not (REPO_ROOT / ".venv" / "bin" / "papermill").exists():
        argv[0] = "papermill"
    out = tmp_path / "03.ipynb"
    argv[argv.index("runs/03.ipynb")] = str(out)
    assert (
        re.search(r"-p train_steps \d", line) and "-f" not in argv
    )  # no params file: the notebook's own outputs
    folders = ["data/results", "figures", "notebooks"]
    before = _tracked_state(REPO_ROOT, folders)
    run = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    import json

    steps = int(re.search(r"-p train_steps (\d+)", line).group(1))
    summary = json.loads((REPO_ROOT / "runs/nbval/results/nano/train_summary.json").read_text())
    assert summary["steps"] == steps  # this run's summary, under runs/
    assert (REPO_ROOT / "runs/nbval/nano/grpo/final").is_dir()  # its weights, under runs/, not runs/nano/
    assert _tracked_state(REPO_ROOT, folders) == before


def test_only_a_published_run_writes_committed_places(tmp_path):
    """Without --publish the pipeline's results and figures go under runs/; with it to data/results/ and figures/.
    Both train into runs/<profile>/, the root whose grpo/final later commands use."""
    from pathlib import Path

    from deepmath_lib.paths import REPO_ROOT

    def where(params):
        return {k: (REPO_ROOT / "notebooks" / v).resolve() for k, v in params.items()}

    runs = REPO_ROOT / "runs"
    assert where(pipeline.output_params("nano", publish=False)) == {
        "results_root": runs,
        "figures_dir": runs / "nano" / "figures",
        "work_dir": runs,
    }
    assert where(pipeline.output_params("smol", publish=True)) == {
        "results_root": REPO_ROOT / "data" / "results",
        "figures_dir": REPO_ROOT / "figures" / "smol",
        "work_dir": runs,
    }
    assert where(pipeline.output_params("nano", publish=True))["figures_dir"] == REPO_ROOT / "figures"
    # the override files hold overrides only: no output places, no recipe values
    for profile in ("nano", "smol", "paper"):
        _, params = pipeline.load_params(profile)
        assert set(params) == {"profile", "quick", "progress"}, params
    assert (
        not (REPO_ROOT / "params").exists()
        and Path(REPO_ROOT / "configs" / "accelerate_zero2.yaml").is_file()
    )
