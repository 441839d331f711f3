"""`deepmath report`: the blocks of README.md and docs/*.md come from stored results; `--check` fails when a page
drifts."""

import re
import subprocess

from deepmath_lib.cli import report_main
from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.report import BLOCKS, MARKER, doc_files, experiment_blocks


def test_readme_and_docs_blocks_match_the_stored_results():
    assert report_main(check=True) == 0


def test_check_covers_every_page_and_every_block():
    pages = doc_files()
    assert REPO_ROOT / "README.md" in pages and len([p for p in pages if p.parent.name == "docs"]) >= 8
    shown = {m.group(1) for p in pages for m in MARKER.finditer(p.read_text())}
    assert set(BLOCKS) | set(experiment_blocks()) == shown


def test_check_fails_on_a_hand_edited_docs_page(tmp_path, capsys):
    page = tmp_path / "nano.md"
    page.write_text(
        (REPO_ROOT / "docs" / "nano.md").read_text().replace("problems gained", "problems won", 1)
    )
    assert report_main(check=True, readme=page) == 1
    assert "differs" in capsys.readouterr().err


def test_experiments_provide_their_blocks_and_the_library_names_none():
    assert {"smol_by_kind", "nano_copy", "generate_batch_check"} <= set(experiment_blocks())
    names = [
        p.name for p in (REPO_ROOT / "experiments").iterdir() if p.is_dir() and not p.name.startswith("_")
    ]
    assert names
    for name in names:
        readme = (REPO_ROOT / "experiments" / name / "README.md").read_text()
        assert f"python -m experiments.{name}." in readme  # the command that reproduces its results
    lib = subprocess.run(
        ["git", "grep", "-n", "-E", "|".join(names), "--", "deepmath_lib"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert lib.stdout == "", lib.stdout


def test_readme_is_short():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220 and len(re.findall(r"\S+", text)) <= 2500


def test_check_fails_on_a_hand_edited_block(tmp_path, capsys):
    copy = tmp_path / "README.md"
    copy.write_text((REPO_ROOT / "README.md").read_text().replace("| DeepMath | ", "| DeepMath | 1", 1))
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


def test_timing_block_renders_the_fresh_clone_record_and_says_when_there_is_none(tmp_path):
    import json

    from deepmath_lib.report import timing_block

    assert "python scripts/fresh_clone.py --demo" in timing_block(
        tmp_path
    )  # nothing stored: says how to measure
    cond = {"cpu": "AMD EPYC", "cpus": 2, "gpu": None, "load_avg_1m": 0.1, "date": "2026-11-30"}
    record = {
        "commit": "0123456789abcdef",
        "steps": {
            "make_test": {"rc": 0, "seconds": 1219.4, "pytest": ["451 passed, 1 skipped", "48 passed"]},
            "make_demo": {
                "rc": 0,
                "seconds": 313.0,
                "pipeline": {"notebooks": {"01_executor": 12.0, "03_grpo_train": 191.2}},
                "eval_summary_reproduced": False,
            },
        },
        "conditions": cond,
    }
    (tmp_path / "fresh_clone.json").write_text(json.dumps(record))
    block = timing_block(tmp_path)
    assert "commit 0123456789" in block and "2 CPU cores (AMD EPYC)" in block
    assert "20 min 19 s" in block and "451 passed, 1 skipped; 48 passed" in block
    assert "5 min 13 s" in block and "01_executor 12 s, 03_grpo_train 3 min 11 s" in block
    assert "differs from the committed one" in block
    record["steps"]["make_demo"]["configs_differing"] = ["deepmath", "grpo"]
    (tmp_path / "fresh_clone.json").write_text(json.dumps(record))
    assert "in the rows deepmath, grpo: the rows of the models GRPO trains" in timing_block(tmp_path)


def test_bench_block_shows_the_one_row_ceiling_and_where_the_rows_went_when_stored(tmp_path):
    import json
    import shutil

    from deepmath_lib.paths import REPO_ROOT
    from deepmath_lib.report import bench_block

    bench = REPO_ROOT / "data/results/bench"
    for name in ("sandbox", "grading", "rollouts_nano_transformers"):
        shutil.copy(bench / f"{name}.json", tmp_path)
    block = bench_block(tmp_path)
    rec = json.loads((tmp_path / "rollouts_nano_transformers.json").read_text())
    assert f"| raw `generate`, one row | {rec['raw_one_row_model_tokens_per_s']:,.0f} |" in block
    assert f"{rec['raw_speedup']:.2f}x faster on 64 rows than on one" in block
    assert f"{rec['concurrent_steps']} steps for its" in block and "fewer than 8 rows" in block
    for key in [
        k for k in rec if k.startswith("raw_one_row") or k == "raw_speedup" or k == "concurrent_steps"
    ]:
        del rec[key]  # a record stored before these figures existed: the block leaves them out
    (tmp_path / "rollouts_nano_transformers.json").write_text(json.dumps(rec))
    block = bench_block(tmp_path)
    assert "one row" not in block and "rows went" not in block and "**" in block


def test_bench_block_renders_the_sandbox_share_only_when_stored(tmp_path):
    import json
    import shutil

    from deepmath_lib.paths import REPO_ROOT
    from deepmath_lib.report import bench_block

    bench = REPO_ROOT / "data/results/bench"
    for name in ("sandbox", "grading", "rollouts_nano_transformers"):
        shutil.copy(bench / f"{name}.json", tmp_path)
    rec = json.loads((tmp_path / "rollouts_nano_transformers.json").read_text())
    block = bench_block(tmp_path)
    assert f"{rec['presandboxed_model_tokens_per_s']:,.0f} |" in block
    assert f"took {rec['sandbox_share']:.0%} of the loop's throughput" in block
    assert f"{rec['concurrent_sparse_seconds']:.2f} s of the run's" in block
    slower = {**rec, "presandboxed_model_tokens_per_s": rec["concurrent_model_tokens_per_s"] - 1}
    slower["sandbox_share"] = round(
        1 - slower["concurrent_model_tokens_per_s"] / slower["presandboxed_model_tokens_per_s"], 3
    )
    (tmp_path / "rollouts_nano_transformers.json").write_text(json.dumps(slower))
    block = bench_block(tmp_path)  # the run's noise larger than what the sandboxes cost: no negative share
    assert "ran no faster" in block and "of the loop's throughput" not in block
    for key in [
        k for k in rec if k.startswith("presandboxed") or k in ("sandbox_share", "concurrent_sparse_seconds")
    ]:
        del rec[key]  # stored before the bench ran it
    (tmp_path / "rollouts_nano_transformers.json").write_text(json.dumps(rec))
    block = bench_block(tmp_path)
    assert "before the clock" not in block and "rows went" in block


def test_space_block_renders_the_stored_measurement_and_says_when_there_is_none(tmp_path):
    import json

    from deepmath_lib.report import space_block

    assert "run `deepmath bench space`" in space_block(tmp_path)
    cond = {"cpu": "AMD EPYC", "cpus": 2, "gpu": None, "load_avg_1m": 0.4, "date": "2026-12-01"}
    record = {
        "bench": "space",
        "startup_s": 12.34,
        "gguf_convert_s": 41.6,
        "requests": 20,
        "normal": 12,
        "hostile": 8,
        "seconds": 6.8,
        "rss_mb_before": 900,
        "rss_mb_peak": 1010,
        "rss_mb_after": 925,
        "processes_before": 33,
        "processes_after": 33,
        "normal_answered": 12,
        "hostile_bounded": 7,
        "secret_leaked": False,
        "conditions": cond,
    }
    (tmp_path / "space.json").write_text(json.dumps(record))
    block = space_block(tmp_path)
    assert "HTTP 200 12.3 s after" in block and "took 42 s" in block and "took 6.8 s" in block
    assert "12 of 12 nano problems" in block and "7 of 8 hostile snippets" in block
    assert "900 MB before, 1010 MB at its peak and 925 MB after" in block and "in no response" in block
    assert "load average 0.4" in block
    (tmp_path / "space.json").write_text(json.dumps({**record, "secret_leaked": True}))
    assert "**leaked**" in space_block(tmp_path)


def test_conditions_say_at_the_start_only_when_taken_before_the_run(tmp_path):
    import json

    from deepmath_lib.bench import conditions, save
    from deepmath_lib.report import conditions_text as _conditions

    before = conditions()
    save("early", {"x": 1}, tmp_path, cond=before)  # what `deepmath bench` does: taken before the run
    save("late", {"x": 1}, tmp_path)  # taken now, at the end
    early = json.loads((tmp_path / "early.json").read_text())["conditions"]
    late = json.loads((tmp_path / "late.json").read_text())["conditions"]
    assert early["load_taken"] == "start" and "load_taken" not in late
    assert f"load average {before['load_avg_1m']} at the start," in _conditions(early)
    assert "at the start" not in _conditions(late)
