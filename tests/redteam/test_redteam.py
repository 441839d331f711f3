"""The red-team suite with every layer this machine has: each hostile snippet in
deepmath_lib.sandbox.redteam.CASES must be stopped, by the expected mechanism (the `full` column of the run in
conftest.py)."""

from __future__ import annotations

import pytest

from deepmath_lib.sandbox.redteam import CASES, CLASSES

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


def test_enough_cases_and_categories() -> None:
    assert len(CASES) >= 40
    assert REQUIRED <= {c.category for c in CASES}
    assert {"files", "network", "processes", "memory", "time", "host state"} <= {
        CLASSES[c.category] for c in CASES
    }
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.timeout(600)  # the first one waits for the shared run
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_case(layers: dict, name: str) -> None:
    row = layers["results"][name]["full"]
    assert row["passed"], f"{name}: {row['detail']}"
