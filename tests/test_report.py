"""`deepmath report`: README blocks come from stored results; `--check` fails when the README drifts."""

from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.report import report_main


def test_readme_blocks_match_the_stored_results():
    assert report_main(check=True) == 0


def test_check_fails_on_a_hand_edited_block(tmp_path, capsys):
    copy = tmp_path / "README.md"
    copy.write_text((REPO_ROOT / "README.md").read_text().replace("peak ", "peak 1", 1))
    assert report_main(check=True, readme=copy) == 1
    assert "differs" in capsys.readouterr().err
    assert report_main(readme=copy) == 0 and report_main(check=True, readme=copy) == 0
    assert (tmp_path / "figures" / "profiles_side_by_side.png").stat().st_size > 10_000  # redrawn beside it


def test_results_block_of_a_greedy_profile_shows_accuracy_and_the_step_time_split():
    from deepmath_lib.report import results_block

    block = results_block("smol")
    assert "make demo PROFILE=smol" in block and "greedy" in block
    assert "| config | accuracy [95% CI] |" in block and "pass@" not in block
    assert "median of" in block and "rollouts" in block and "forward + backward + optimizer" in block
