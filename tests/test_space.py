"""The Space (space/app.py) as its visitors and a Space build see it: a real browser, a load test on loopback, and
the exact install route of `make space-bundle`. Each starts the app as a subprocess; all three are slow."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from deepmath_lib.bench.space import (
    FAKE_SECRET,
    answered,
    bounded,
    free_port,
    http_status,
    run_load,
    start_app,
    stop_app,
    warm_up,
)
from deepmath_lib.bench.space import nano_solved as find_nano_solved
from deepmath_lib.models import describe_weights
from deepmath_lib.profiles import get_profile

REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "figures" / "space.png"
CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app from the repo, with a fake secret in its environment; shared by the browser and load tests."""
    log = tmp_path_factory.mktemp("space") / "app.log"
    proc, url, _ = start_app(
        sys.executable, REPO, log, HF_TOKEN=FAKE_SECRET, DEEPMATH_FAKE_SECRET=FAKE_SECRET
    )
    yield proc, url, log
    stop_app(proc)


# ------------------------------------------------------------------ a real browser
@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium for Playwright (Playwright's own browser download is not used). Missing: skip with the
    reason in the warnings summary too (shown without -rs), or, with CI=true, fail."""
    missing = None
    path = shutil.which("chromium")
    if path is None:
        missing = "no chromium on PATH (apt-get install chromium; `make test` does it when CI=true)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is missing (pip install -e '.[dev]')"
    if missing is not None:
        if CI:
            pytest.fail(f"CI must run the Space's browser test: {missing}")
        warnings.warn(f"the Space's browser test skipped: {missing}", UserWarning, stacklevel=1)
        pytest.skip(f"the Space's browser test needs a browser: {missing}")
    return path


@pytest.mark.timeout(900)
def test_browser_solves_with_the_tool_and_streams_the_trace(chromium, app):
    """A visitor asks smol "What is 123*457?" with the tool on: the code, its output and 56211 appear."""
    from playwright.sync_api import expect, sync_playwright

    proc, url, log = app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            page.get_by_label("Problem").fill("What is 123*457?")
            page.get_by_label("smol", exact=True).check()
            expect(page.get_by_label("Tool (Python sandbox)")).to_be_checked()
            page.get_by_role("button", name="Solve", exact=True).click()
            # the first use of smol converts its GGUF once (timed by `deepmath bench space`), then loads and generates
            summary = page.locator("#dm-summary")
            expect(summary).to_contain_text("Answer: 56211", timeout=600_000)
            expect(summary).to_contain_text("1 tool call")
            expect(summary).to_contain_text("Weights:")
            expect(page.locator(".dm-code").first).to_contain_text("123*457")
            expect(page.locator(".dm-output").first).to_contain_text("56211")
            expect(page.locator(".dm-answer").first).to_contain_text("56211")
            FIGURE.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(FIGURE), full_page=True)
        finally:
            browser.close()
    assert proc.poll() is None, log.read_text()[-3000:]


# The page's own words (space/app.py), as a visitor reads them.
NOT_BOXED = "(not boxed by the model: read from its text)"
NOT_CLOSED = "never closed, so not run"


@pytest.mark.timeout(900)
def test_browser_says_how_each_answer_and_block_fared_and_what_each_model_knows(chromium, app):
    """The models on offer (nano, smol, and smol with its shipped GRPO adapter), then four real traces under
    greedy decoding: smol states a derivative without a box (the page says the answer was read from the text),
    smol runs out of tokens inside a code block (shown as never closed, not run), and nano and trained smol answer
    one of their problems; under each answer a line says what that model was trained on."""
    from playwright.sync_api import expect, sync_playwright

    from deepmath_lib.nano.problems import KINDS

    proc, url, log = app
    adapter = _space_module().smol_adapter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            expect(page.get_by_label("nano", exact=True)).to_have_count(1)
            expect(page.get_by_label("smol", exact=True)).to_have_count(1)
            expect(page.get_by_label("smol + GRPO", exact=True)).to_have_count(1)
            assert adapter is not None  # shipped in the package (a local training run's would take its place)
            summary = page.locator("#dm-summary")

            def solve(problem: str, model: str) -> None:
                page.goto(url)  # a fresh page: the summary below is this problem's, not the one before
                page.get_by_label("Problem").fill(problem)
                page.get_by_label(model, exact=True).check()
                page.get_by_role("button", name="Solve", exact=True).click()
                expect(summary).to_contain_text("Weights:", timeout=600_000)

            solve("What is the derivative of x^3 + 2x?", "smol")
            expect(summary).to_contain_text(NOT_BOXED)
            expect(summary).to_contain_text("smol is SmolLM2-135M-Instruct as released, not trained here")
            expect(summary).to_contain_text("often wrong")

            problem = "Write a long Python class for a bank account with deposit, withdraw and balance methods, with docstrings."
            solve(problem, "smol")
            expect(summary).to_contain_text("0 tool calls")
            expect(summary).to_contain_text("finish: budget")
            unrun = page.locator(".dm-code.dm-notrun")
            expect(unrun).to_have_count(1)
            expect(unrun).to_contain_text(NOT_CLOSED)
            expect(page.get_by_text("runs in the sandbox")).to_have_count(0)

            solve("What is 7^23 mod 13?", "nano")
            expect(summary).to_contain_text(f"nano was trained on {len(KINDS)} kinds of problem only")
            expect(summary).to_contain_text("Answers to other kinds of problem are often wrong.")
            expect(page.locator(".dm-code").first).to_contain_text("ran in the sandbox")

            solve("What is 7^23 mod 13?", "smol + GRPO")
            expect(summary).to_contain_text(f"smol + GRPO was trained on {len(KINDS)} kinds of problem only")
            expect(summary).to_contain_text(describe_weights(get_profile("smol"), adapter))
            expect(page.locator(".dm-code").first).to_contain_text("ran in the sandbox")
        finally:
            browser.close()
    assert proc.poll() is None, log.read_text()[-3000:]


def _space_module():
    """space/app.py imported in this process (what the page offers depends only on the files of this copy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_app_for_test", REPO / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ load
@pytest.fixture(scope="module")
def nano_solved() -> list[tuple[str, str]]:
    """(problem, answer) pairs that the nano weights the Space serves solve with a tool call (see
    deepmath_lib.bench.space.nano_solved)."""
    solved = find_nano_solved(64)
    assert len(solved) >= 13, f"the nano weights solve only {len(solved)} of 64 eval problems with a call"
    return solved


@pytest.mark.timeout(900)
def test_load_hostile_and_normal_requests(app, nano_solved):
    """20 concurrent requests on loopback: 12 nano problems and 8 hostile snippets. The server stays up, answers
    the problems correctly, bounds the snippets (error or timeout, no secret), and returns to its baseline memory
    and process count."""
    from gradio_client import Client

    proc, url, log = app
    client = Client(url, verbose=False)
    # warm-up: the nano model, the zygote and every code path the load takes, so the baseline includes them;
    # the trace streams: the code block shows (and runs) before its output block, and both before the answer
    (warm_problem, warm_answer), normal = nano_solved[0], nano_solved[1:13]
    warm = warm_up(client, warm_problem)
    updates = [trace for trace, _ in warm.outputs()]
    assert answered(warm.outputs()[-1][1], warm_answer), warm.outputs()[-1]
    assert any("dm-code" in u and "dm-running" in u and "dm-output" not in u for u in updates), updates
    assert any("dm-output" in u and "dm-answer" not in u for u in updates), updates

    load = run_load(client, proc, url, normal)
    assert load["requests"] == 20
    wrong = []
    for kind, name, answer, first, second in load["results"]:
        assert FAKE_SECRET not in first + second, f"{name}: the secret leaked"
        if kind == "normal":
            if not answered(second, answer):
                wrong.append((name, answer, second))
        else:  # an error or a timeout; only the escape to `os` may succeed, and it finds an empty environment
            assert bounded(second) or name == "environment secrets", (name, second)
            for leak in ("root:", "SOLVE_CONCURRENCY", "DEEPMATH_FAKE_SECRET", "HF_TOKEN", "HTTP/1.1"):
                assert leak not in first, (name, leak, first)
    assert not wrong, wrong
    assert proc.poll() is None and http_status(url) == 200, log.read_text()[-3000:]

    # Memory and processes return near the baseline (workers killed, batches freed).
    print(
        f"load: 20 requests in {load['seconds']} s; app RSS {load['rss_mb_before']} MB before, "
        f"{load['rss_mb_peak']} peak, {load['rss_mb_after']} after; processes below the app "
        f"{load['processes_before']} before, {load['processes_after']} after"
    )
    assert load["processes_after"] <= load["processes_before"], "sandbox processes left behind"
    assert load["rss_mb_after"] <= load["rss_mb_before"] + 150, load
    assert FAKE_SECRET not in log.read_text()


# ------------------------------------------------------------------ the exact install route of a Space
@pytest.mark.timeout(1500)
def test_space_bundle_installs_in_a_fresh_venv_and_serves(tmp_path):
    """`make space-bundle`'s folder, installed as its Dockerfile does (a fresh venv, `pip install -r
    requirements.txt` in the folder), serves HTTP 200 and solves a nano problem with the weights from the wheel."""
    out = tmp_path / "space"
    subprocess.run([sys.executable, str(REPO / "space" / "bundle.py"), "--out", str(out)], check=True)
    names = sorted(p.name for p in out.iterdir())
    wheels = [n for n in names if n.endswith(".whl")]
    assert {"app.py", "Dockerfile", "README.md", "requirements.txt"} <= set(names) and len(wheels) == 1, names
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: docker" in readme and "app_port: 7860" in readme
    requirements = (out / "requirements.txt").read_text()
    assert f"./{wheels[0]}[space]" in requirements and "torch==2.13.0" in requirements
    dockerfile = (out / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # The Dockerfile's install, with two differences in how pip works, not in what it installs: no byte-compiling
    # (a minute on 2 cores), and no retries against a package index this machine cannot resolve (the CPU torch
    # index behind a closed network: pip would retry it ~13 s for each of ~100 packages).
    pip_env = dict(os.environ)
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
    except OSError:
        pip_env["PIP_RETRIES"] = "0"
    t0 = time.monotonic()
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-compile", "-r", "requirements.txt"],
        cwd=out,
        env=pip_env,
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    install_s = time.monotonic() - t0
    where = subprocess.run(
        [python, "-c", "import deepmath_lib, torch; print(deepmath_lib.__file__, torch.__version__)"],
        cwd=out,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(venv) in where and "+cpu" in where, where

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["DEEPMATH_CACHE"] = str(tmp_path / "cache")
    log = tmp_path / "app.log"
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, "app.py"],
        cwd=out,
        env={**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        while http_status(url) != 200:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - t0 < 120, log.read_text()[-3000:]
            time.sleep(0.5)
        up_s = time.monotonic() - t0
        from gradio_client import Client

        _, summary = Client(url, verbose=False).predict(
            "What is 7^23 mod 13?", "nano", True, api_name="/solve"
        )
        # the model ran (to an answer or not: the load test checks answers) with the weights inside the wheel
        assert "model tokens" in summary and "shipped with the package" in summary, summary
    finally:
        stop_app(proc)
    print(f"space bundle: pip install {install_s:.0f} s, HTTP 200 after {up_s:.1f} s")
