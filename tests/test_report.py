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
