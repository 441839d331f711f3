"""One run of the red-team suite in every mode of `deepmath_lib.sandbox.redteam.MODES` (full, each optional layer
off alone, all off), shared by the tests here. It runs in a separate process (own session, bounded memory and
time) so that a sandbox failure cannot take the test machine down."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (16 * 1024**3, 16 * 1024**3))


@pytest.fixture(scope="session")
def layers() -> dict:
    """`run_layers()`'s table: modes, probes (with their guards) and results[probe][mode]."""
    env = {**os.environ, "DEEPMATH_HOST_SECRET": "HOSTSECRET-do-not-leak"}
    env.pop("DEEPMATH_SANDBOX_DISABLE", None)  # each mode says itself what is off
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath_lib.sandbox.redteam", "--layers", "--json"],
        capture_output=True,
        text=True,
        timeout=480,
        env=env,
        preexec_fn=_limits,
        start_new_session=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"red-team runner produced nothing: {proc.stderr[-2000:]}"
    assert "HOSTSECRET-do-not-leak" not in proc.stdout + proc.stderr
    return json.loads(lines[-1])
