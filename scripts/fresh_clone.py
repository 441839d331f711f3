"""What a newcomer's two commands cost on a fresh clone of this checkout's HEAD, measured, never typed by hand.

Clones HEAD into a temporary folder and runs there, one after the other:
1. `CI=true make test` (installs everything, then the unit tests and the notebooks under nbval), as CI does;
2. with `--demo`, `make demo` after removing the committed nano evaluation samples, so the evaluation is recomputed,
   then compares the clone's regenerated `data/results/nano/eval_summary.csv` with the committed one, row by row.

Stores `data/results/bench/fresh_clone.json` in this checkout (seconds, pytest's summary lines, whether the demo
reproduced the committed table, the clone's `demo_nano.json` timing per notebook, the machine's conditions at the
start); `deepmath report` writes the timing block of docs/outputs.md from it. Exits 1 when a step fails. Keep the machine
otherwise idle while it runs (about 20 + 6 minutes on 2 cores).

    python scripts/fresh_clone.py [--demo] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deepmath_lib.bench import conditions, save
from deepmath_lib.paths import REPO_ROOT

SUMMARY = re.compile(r"^=*\s*(\d+ passed.*?) in [\d.]+s", re.M)


def _run(cmd: list[str], cwd: Path, log: Path, env: dict) -> tuple[int, float, str]:
    t0 = time.time()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    return rc, round(time.time() - t0, 1), log.read_text(errors="replace")


def _rows(path: Path) -> dict[str, str]:
    """An eval_summary.csv's rows by configuration (empty when the file is missing)."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    col = lines[0].split(",").index("config")
    return {line.split(",")[col]: line for line in lines[1:] if line}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--demo", action="store_true", help="also run `make demo` with the nano evaluation recomputed"
    )
    ap.add_argument("--keep", action="store_true", help="keep the clone (default: removed, it holds ~5 GB)")
    a = ap.parse_args()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    commit = head.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    if dirty.strip():
        print("note: uncommitted changes are not in the clone; it tests HEAD", commit[:10], file=sys.stderr)
    cond = conditions()
    tmp = Path(tempfile.mkdtemp(prefix="deepmath-fresh-"))
    clone = tmp / "clone"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    # nothing of this checkout's virtual environment on the clone's PATH: it installs its own
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO_ROOT))
    )
    env["CI"] = "true"
    record: dict = {"commit": commit, "steps": {}}
    ok = True
    try:
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        print(f"clone of {commit[:10]} in {clone}; CI=true make test ...", flush=True)
        rc, secs, out = _run(["make", "test"], clone, tmp / "test.log", env)
        record["steps"]["make_test"] = {"rc": rc, "seconds": secs, "pytest": SUMMARY.findall(out)}
        print(f"  make test: rc {rc} in {secs:.0f} s; {SUMMARY.findall(out)}", flush=True)
        ok = rc == 0
        if ok and a.demo:
            samples = clone / "data/results/nano/samples"
            shutil.rmtree(samples, ignore_errors=True)
            print("make demo (nano evaluation samples removed, so it is recomputed) ...", flush=True)
            env.pop("CI", None)
            rc, secs, out = _run(["make", "demo"], clone, tmp / "demo.log", env)
            step = {"rc": rc, "seconds": secs, "samples_recomputed": True}
            timing = clone / "data/results/bench/demo_nano.json"
            if timing.exists():
                step["pipeline"] = json.loads(timing.read_text())
            mine = _rows(REPO_ROOT / "data/results/nano/eval_summary.csv")
            theirs = _rows(clone / "data/results/nano/eval_summary.csv")
            step["eval_summary_reproduced"] = theirs == mine
            # which configurations' rows differ (GRPO retrains, so its weights may: see docs/outputs.md)
            step["configs_differing"] = sorted(
                c for c in set(mine) | set(theirs) if mine.get(c) != theirs.get(c)
            )
            record["steps"]["make_demo"] = step
            print(
                f"  make demo: rc {rc} in {secs:.0f} s; table reproduced: {step['eval_summary_reproduced']}"
            )
            ok = rc == 0
    finally:
        if not ok:
            print(f"a step failed; logs kept in {tmp}", file=sys.stderr)
        elif not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if ok:
        print(f"wrote {save('fresh_clone', record, cond=cond)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
