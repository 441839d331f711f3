"""`deepmath bench space`: the Space (`space/app.py`) timed as a visitor meets it, on this machine.

- **startup**: `python space/app.py` until its page answers HTTP 200 (models load on first use, not before);
- **smol's first load**: its GGUF converted into a fresh cache folder, what the first smol request waits for once;
- **load**: the load test of `tests/test_space.py`, 20 concurrent requests on loopback (12 nano problems that the
  shipped weights solve, 8 hostile snippets), with the app's memory (RSS) before, at its peak and after.

The helpers here (starting and stopping the app, its memory and processes, the hostile snippets, the load) are the
ones `tests/test_space.py` runs and asserts on. The result goes to `data/results/bench/space.json`; the README's Space
section renders it (`deepmath report`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..agent import run_agent
from ..backends import make_backend
from ..models import trained_model_path
from ..nano import generate_problems
from ..paths import REPO_ROOT
from ..profiles import Sampling, get_profile

# Placed in the app's environment, as a Space's tokens are; no response may ever contain it.
FAKE_SECRET = "hf_FakeSpaceSecret4bW9tZXRoaW5nIHNlY3JldA"
# What a hostile snippet uses to reach `os` without importing it.
_OS = "g = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except OSError:
        return None


def start_app(
    python: str, cwd: Path, log: Path, timeout: float = 120, **env: str
) -> tuple[subprocess.Popen, str, float]:
    """Start `python app.py` (or space/app.py under a repo) on a free loopback port and wait for HTTP 200.
    Returns (process, url, seconds until the first 200); RuntimeError (with the log's tail) if it never comes."""
    port = free_port()
    app = "app.py" if (cwd / "app.py").is_file() else "space/app.py"
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), **env}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, app],
        cwd=cwd,
        env=full_env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    while http_status(url) != 200:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            stop_app(proc)
            raise RuntimeError(f"no HTTP 200 from {url} within {timeout:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, url, time.monotonic() - t0


def stop_app(proc: subprocess.Popen) -> None:
    """Stop the app and everything it started (its session: the sandbox zygote and workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (the sandbox zygote and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def hostile_snippets(app_pid: int, port: int) -> dict[str, str]:
    """Snippets a hostile visitor sends to the Sandbox tab (the `os` module reached without importing it)."""
    return {
        "fork bomb": _OS + "while True:\n    g['fork']()",
        "memory hog": "xs = []\nwhile True:\n    xs.append(bytearray(10**8))",
        "cpu loop": "while True:\n    pass",
        "/etc/shadow": "print(open('/etc/shadow').read())",
        "the app's source": f"print(open({str(REPO_ROOT / 'space' / 'app.py')!r}).read())",
        "the app's environment": f"print(open('/proc/{app_pid}/environ').read())",
        "environment secrets": _OS + "print(dict(g['environ']))\nprint(g['system']('env'))",
        "socket to the app": f"import socket\nprint(socket.create_connection(('127.0.0.1', {port})).recv(99))",
    }


def answered(summary: str, answer: str) -> bool:
    """Whether a /solve summary (space/app.py's `render_summary`) gives `answer`."""
    return f"**Answer: {answer}**" in summary


def bounded(status: str) -> bool:
    """Whether a /sandbox status says the snippet ended in an error or a timeout (space/app.py's `run_snippet`)."""
    return status.startswith(("**Error**", "**Timed out**"))


def nano_solved(pool_size: int = 64) -> list[tuple[str, str]]:
    """(problem, answer) pairs that the nano weights the Space serves solve with a tool call under its greedy
    decoding. Found in-process with the library, so the load follows the weights when they are retrained."""

    profile = get_profile("nano")
    backend = make_backend(profile, model_path=trained_model_path(profile))
    budget = min(profile.eval_sampling.max_model_tokens, 256)  # space/app.py: MAX_MODEL_TOKENS
    pool = generate_problems(pool_size, split="eval", seed=0)
    trajs = run_agent(
        backend,
        [p["problem"] for p in pool],
        profile,
        sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_model_tokens=budget),
    )
    backend.close()
    return [
        (p["problem"], p["answer"])
        for p, t in zip(pool, trajs, strict=True)
        if t.calls and t.answer == p["answer"]
    ]


def run_load(
    client, proc: subprocess.Popen, url: str, normal: list[tuple[str, str]], settle_s: float = 30
) -> dict:
    """The normal problems (to /solve, with nano and the tool) and the hostile snippets (to /sandbox), all submitted
    at once. Returns the wall time, the app's RSS before / at peak / after (after: once it is back within 150 MB of
    the baseline and no process is left over, or `settle_s` later), the processes below the app before and after,
    and each job as (kind, name, expected answer or None, trace, summary)."""
    time.sleep(2)
    base_rss, base_procs = rss_mb(proc.pid), len(descendants(proc.pid))
    hostile = hostile_snippets(proc.pid, int(url.rsplit(":", 1)[1].strip("/")))
    t0 = time.monotonic()
    jobs = [("normal", q, a, client.submit(q, "nano", True, api_name="/solve")) for q, a in normal]
    jobs += [
        ("hostile", name, None, client.submit(code, api_name="/sandbox")) for name, code in hostile.items()
    ]
    peak_rss = base_rss
    while not all(job.done() for *_, job in jobs):
        peak_rss = max(peak_rss, rss_mb(proc.pid))
        if time.monotonic() - t0 > 600:
            raise RuntimeError("the load did not finish within 10 minutes")
        time.sleep(0.2)
    wall = time.monotonic() - t0
    results = [(kind, name, answer, *job.result(timeout=60)) for kind, name, answer, job in jobs]
    deadline = time.monotonic() + settle_s
    while True:
        rss, procs = rss_mb(proc.pid), len(descendants(proc.pid))
        if (rss <= base_rss + 150 and procs <= base_procs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    return {
        "requests": len(jobs),
        "normal": len(normal),
        "hostile": len(hostile),
        "seconds": round(wall, 1),
        "rss_mb_before": round(base_rss),
        "rss_mb_peak": round(peak_rss),
        "rss_mb_after": round(rss),
        "processes_before": base_procs,
        "processes_after": procs,
        "results": results,
    }


def warm_up(client, problem: str):
    """One nano request and one snippet, so a baseline taken next includes the model, the zygote and every path
    the load takes. Returns the request's finished job (its `outputs()` are the streamed updates)."""
    job = client.submit(problem, "nano", True, api_name="/solve")
    job.result(timeout=300)
    client.predict("print(1)", api_name="/sandbox")
    return job


def gguf_convert_seconds() -> float:
    """smol's GGUF converted into a fresh, temporary cache folder, in a fresh process: what the Space's first smol
    request waits for once."""
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from deepmath_lib.models import model_dir; from deepmath_lib.profiles import get_profile; "
                "model_dir(get_profile('smol'))",
            ],
            env={**os.environ, "DEEPMATH_CACHE": cache},
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f"converting smol's GGUF failed:\n{proc.stderr[-2000:]}")
        return time.monotonic() - t0


def measure() -> dict:
    from gradio_client import Client

    normal = nano_solved()
    if len(normal) < 13:
        raise RuntimeError(f"the nano weights solve only {len(normal)} of 64 eval problems with a call")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, up_s = start_app(
            sys.executable,
            REPO_ROOT,
            Path(tmp) / "app.log",
            HF_TOKEN=FAKE_SECRET,
            DEEPMATH_FAKE_SECRET=FAKE_SECRET,
        )
        try:
            client = Client(url, verbose=False)
            warm_up(client, normal[0][0])
            load = run_load(client, proc, url, normal[1:13])
        finally:
            stop_app(proc)
    results = load.pop("results")
    load["normal_answered"] = sum(
        kind == "normal" and answered(summary, answer) for kind, _, answer, _, summary in results
    )
    load["hostile_bounded"] = sum(kind == "hostile" and bounded(summary) for kind, *_, summary in results)
    load["secret_leaked"] = any(FAKE_SECRET in trace + summary for *_, trace, summary in results)
    return {
        "bench": "space",
        "startup_s": round(up_s, 1),
        "gguf_convert_s": round(gguf_convert_seconds(), 1),
        **load,
    }
