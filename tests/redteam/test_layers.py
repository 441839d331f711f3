"""The red-team suite in each degraded mode (a container without user/network namespaces, Landlock, seccomp or
the privilege drop, and all of them off): what rlimits, the wall-clock kill and our own checks stop stays stopped
everywhere; whatever gets through is exactly what the guards of the case predict from the mode's feature report,
and every layer whose absence let it through was announced by the sandbox's one-line warning."""

from __future__ import annotations

import json
import re

import pytest

from deepmath_lib.paths import REPO_ROOT
from deepmath_lib.sandbox.core import GUARD_LAYER, LAYERS
from deepmath_lib.sandbox.redteam import (
    CASES,
    LAYERS_JSON,
    MODES,
    check_layers,
    expected_stopped,
    layers_block,
)

ALWAYS = {"rlimits", "timeout", "checks"}
pytestmark = pytest.mark.timeout(600)  # the first test waits for the shared run


def test_every_mode_ran_with_its_layers_off(layers: dict) -> None:
    assert list(layers["modes"]) == list(MODES)
    assert set(layers["results"]) == {c.name for c in CASES}
    for mode, m in layers["modes"].items():
        feats, off = m["features"], set(MODES[mode])
        assert set(m["disable"]) == off
        if "seccomp" in off:
            assert feats["seccomp"] is False and "seccomp" in m["missing"]
        if "landlock" in off:
            assert feats["landlock"] == 0 and "landlock" in m["missing"]
        if "netns" in off:
            assert feats["netns"] == "" and "netns" in m["missing"]
        if "privileges" in off:
            assert feats["privileges"] not in ("uid nobody", "root, capabilities cleared")
    assert set(MODES["all off"]) == set(LAYERS)


def test_always_on_guards_hold_in_every_mode(layers: dict) -> None:
    always = [c.name for c in CASES if ALWAYS & set(c.guards)]
    assert len(always) >= 25
    broken = [
        f"{mode}: {name} ({r['detail']})"
        for name in always
        for mode, r in layers["results"][name].items()
        if not r["stopped"]
    ]
    assert not broken, broken


@pytest.mark.parametrize("mode", list(MODES))
def test_table_is_what_the_guards_predict(layers: dict, mode: str) -> None:
    guards = layers["modes"][mode]["guards"]
    wrong = []
    for c in CASES:
        r = layers["results"][c.name][mode]
        if r["stopped"] != expected_stopped(c.guards, guards):
            wrong.append(
                f"{c.name}: {'stopped' if r['stopped'] else 'NOT stopped'} ({r['outcome']}: {r['detail']})"
            )
    assert not wrong, wrong


@pytest.mark.parametrize("mode", list(MODES))
def test_what_gets_through_was_announced(layers: dict, mode: str) -> None:
    missing = set(layers["modes"][mode]["missing"])
    for c in CASES:
        if not layers["results"][c.name][mode]["stopped"]:
            culprits = {GUARD_LAYER[g] for g in c.guards if g in GUARD_LAYER}
            assert culprits and culprits <= missing, (
                f"{c.name} got through; warned only about {sorted(missing)}"
            )


def test_degraded_modes_really_degrade(layers: dict) -> None:
    res = layers["results"]
    assert all(res[c.name]["full"]["stopped"] for c in CASES)
    assert not res["open_read_secret"]["no Landlock"]["stopped"]  # Landlock alone guards the files
    assert not res["unix_path_to_host"]["no seccomp"]["stopped"]  # seccomp alone guards unix sockets by path
    assert not res["socket_escape_connect"]["all off"]["stopped"]
    assert res["kill_all"]["all off"]["outcome"] == "not run"  # the pre-check kept it from running
    assert check_layers(layers) == []


def test_stored_table_is_current(layers: dict) -> None:
    stored = json.loads(LAYERS_JSON.read_text())
    assert stored["probes"] == layers["probes"], (
        "CASES changed: run python -m deepmath_lib.sandbox.redteam --layers --write"
    )
    assert {m: s["disable"] for m, s in stored["modes"].items()} == {
        m: s["disable"] for m, s in layers["modes"].items()
    }
    assert check_layers(stored) == []
    # What decides each outcome is the set of layers each mode has (its guards) and whether we run as root; the
    # kernel's build string alone (two builds of one kernel, as on our VMs) does not
    if stored["machine"]["host_uid"] != layers["machine"]["host_uid"] or any(
        stored["modes"][m]["guards"] != layers["modes"][m]["guards"] for m in MODES
    ):
        pytest.skip("stored on a machine with other layers: compare its table there")
    live = {n: {m: r["stopped"] for m, r in per.items()} for n, per in layers["results"].items()}
    assert {n: {m: r["stopped"] for m, r in per.items()} for n, per in stored["results"].items()} == live


def test_docs_block_is_rendered_from_the_stored_table() -> None:
    block = layers_block()
    assert block.count("\n| ") >= 5 and all(m in block for m in MODES)
    page = (REPO_ROOT / "docs" / "sandbox.md").read_text()
    found = re.search(r"<!-- sandbox_layers:start -->\n(.*?)\n<!-- sandbox_layers:end -->", page, re.S)
    assert found, "docs/sandbox.md lacks the sandbox_layers block"
    assert found.group(1) == block, (
        "docs/sandbox.md's block is stale: python -m deepmath_lib.sandbox.redteam --layers --write, then "
        "deepmath report"
    )
