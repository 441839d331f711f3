"""The red-team suite: every hostile snippet in deepmath_lib.sandbox.redteam.CASES, run in a separate process
(own session, bounded memory and time) so that a sandbox failure cannot take the test machine down."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from deepmath_lib.sandbox.redteam import CASES

REQUIRED = {
    "file",
    "env",
    "network",
    "process",
    "introspection",
    "eval-gadget",
    "pickle",
    "lifetime",
    "time",
    "memory",
    "output",
    "exit",
    "kill",
}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (16 * 1024**3, 16 * 1024**3))


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    env = {**os.environ, "DEEPMATH_HOST_SECRET": "HOSTSECRET-do-not-leak"}
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath_lib.sandbox.redteam", "--json"],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        preexec_fn=_limits,
        start_new_session=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"red-team runner produced nothing: {proc.stderr[-2000:]}"
    rows = json.loads(lines[-1])
    assert "HOSTSECRET-do-not-leak" not in proc.stdout
    return {r["name"]: r for r in rows}


def test_enough_cases_and_categories() -> None:
    assert len(CASES) >= 40
    assert REQUIRED <= {c.category for c in CASES}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", [c.name for c in CASES] + ["no_tcp_connection_reached_host"])
def test_case(results: dict[str, dict], name: str) -> None:
    case = next((c for c in CASES if c.name == name), None)
    if name not in results:
        assert case is not None and case.dangerous, f"{name} did not run"
        pytest.skip("dangerous case skipped: seccomp or uid separation unavailable here")
    row = results[name]
    assert row["passed"], f"{name}: {row['detail']}"
