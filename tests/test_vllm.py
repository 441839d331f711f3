"""vLLM's real engine (its CPU build here; the same code runs on GPUs), no mocks: AsyncLLM evaluation across
datasets x configs in one process, a rank-32 LoRA adapter saved by our GRPO, the OpenAI server, smol's fenced-code
stop, the CLI, and GRPO through TRL's colocated vLLM with the importance-sampling ratio of an unchanged policy.

Each engine start costs ~30-60 s on 2 cores, so each test starts at most one or two and closes them itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deepmath_lib.profiles import Sampling, get_profile

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "deepmath_lib.cli"]
MEM = 0.25  # of a NUMA node's RAM on CPU: enough for these models' KV caches, and two engines fit at once


def nano(**kw):
    return get_profile("nano", backend="vllm", gpu_memory_utilization=MEM, **kw)


def smol(**kw):
    return get_profile("smol", backend="vllm", gpu_memory_utilization=MEM, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


class Server:
    """A vLLM OpenAI server on 127.0.0.1 (a free port), healthy or a clear failure with its log; stopped by pid."""

    def __init__(self, model: str, log: Path, extra: tuple[str, ...] = (), dev_mode: bool = False):
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--gpu-memory-utilization", str(MEM)]
        cmd += ["--max-model-len", "1024", "--enforce-eager", *extra]
        e = env() | ({"VLLM_SERVER_DEV_MODE": "1"} if dev_mode else {})
        self.proc = subprocess.Popen(
            cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=e, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 420) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(2)
        raise TimeoutError(f"server not healthy in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def assert_tool_answer(traj, value: str) -> None:
    """The model called the tool, the executor printed `value`, the answer is `value` and the fence stop held."""
    assert traj.error is None, traj.error
    assert len(traj.calls) >= 1 and traj.calls[0].ok, traj.text
    assert traj.calls[0].output.strip() == value, traj.text
    assert traj.answer == value, traj.text
    # stopped on the closing fence: the code block is complete and followed by the output block
    assert "```python\n" in traj.text and f"```\n```output\n{value}\n```" in traj.text, traj.text


@pytest.fixture(scope="module")
def nano_adapter(tmp_path_factory) -> str:
    """A rank-32 LoRA adapter of nano saved by our GRPO (one step, transformers rollouts)."""
    from deepmath_lib.grpo import build_trainer, train_problems
    from deepmath_lib.models import load_model

    prof = get_profile(
        "nano",
        lora_r=32,
        lora_alpha=16,
        prompts_per_step=2,
        num_generations=2,
        train_sampling=Sampling(temperature=1.0, max_model_tokens=16),
        save_steps=1000,
    )
    model, tok = load_model(prof)
    model.train()
    out = tmp_path_factory.mktemp("grpo")
    trainer = build_trainer(prof, model, tok, train_problems(prof, n=8), out, steps=1, progress=False)
    trainer.train()
    trainer.save_model(str(out / "final"))
    tok.save_pretrained(str(out / "final"))
    cfg = json.loads((out / "final" / "adapter_config.json").read_text())
    assert cfg["r"] == 32
    return str(out / "final")


def test_async_engine_evaluates_two_datasets_two_configs_in_one_process(tmp_path):
    """One AsyncLLM serves successive agent runs (each its own asyncio.run) without EngineDeadError."""
    import pandas as pd

    from deepmath_lib.datasets import load_problems
    from deepmath_lib.evaluate import evaluate

    local = tmp_path / "heldout.jsonl"
    local.write_text("".join(json.dumps(p) + "\n" for p in load_problems("nano", n=3, split="heldout")))
    summary, _ = evaluate(
        nano(),
        datasets=["nano", str(local)],
        configs=["baseline", "agent"],
        samples=2,
        n_problems=3,
        results_root=tmp_path / "results",
        progress=False,
    )
    assert len(summary) == 4 and set(summary.config) == {"baseline", "agent"}
    rows = [json.loads(line) for f in (tmp_path / "results").rglob("*.jsonl") for line in f.open()]
    assert len(rows) == 2 * 2 * 3 * 2
    assert all(r["finish_reason"] != "error" for r in rows)
    df = pd.DataFrame(rows)
    # the agent prompt makes nano call the tool; the baseline prompt never runs code
    assert df[df.config == "baseline"].n_calls.sum() == 0
    assert df[df.config == "agent"].n_calls.sum() > 0


def test_engine_serves_rank32_adapter_with_profile_context_and_final_only_requests(nano_adapter):
    from vllm.sampling_params import RequestOutputKind

    from deepmath_lib.agent import run_agent
    from deepmath_lib.backends import VLLMBackend
    from deepmath_lib.datasets import load_problems

    prof = nano(max_model_len=768)
    backend = VLLMBackend.from_profile(prof, model_path=nano_adapter)
    seen = []
    inner = backend.engine.generate

    def spy(prompt, params, **kw):
        seen.append((params, kw.get("lora_request")))
        return inner(prompt, params, **kw)

    backend.engine.generate = spy
    try:
        assert backend.engine_args.max_lora_rank == 32  # from the adapter's config (vLLM's default is 16)
        assert backend.engine_args.max_model_len == 768  # from the profile
        assert backend.adapter == nano_adapter
        problems = [p["problem"] for p in load_problems("nano", n=4)]
        for _ in range(2):  # two event loops, one engine
            trajs = run_agent(backend, problems, prof, samples=1)
            assert all(t.error is None and t.model_tokens > 0 for t in trajs), [t.error for t in trajs]
    finally:
        backend.close()
    params, lora = seen[0]
    assert params.output_kind == RequestOutputKind.FINAL_ONLY and params.logprobs is None
    assert lora is not None and lora.lora_path == nano_adapter


def test_cli_solve_smol_on_vllm():
    out = subprocess.run(
        [*CLI, "solve", "--profile", "smol", "--backend", "vllm", "What is 123*457?"],
        capture_output=True,
        text=True,
        env=env() | {"DEEPMATH_VLLM_MEMORY": str(MEM)},
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "answer: 56211", out.stdout[-2000:]
    assert "56211" in out.stdout and "print(123*457)" in out.stdout


def test_openai_server_smol_fence_stop_and_cli(tmp_path):
    from deepmath_lib.agent import run_agent
    from deepmath_lib.backends import make_backend
    from deepmath_lib.models import model_dir

    prof = get_profile("smol", backend="openai")
    server = Server(model_dir(prof), tmp_path / "server.log")
    try:
        server.wait()
        backend = make_backend(prof, base_url=server.url)
        trajs = run_agent(backend, ["What is 123*457?", "What is 4821*37?"], prof)
        assert_tool_answer(trajs[0], "56211")
        assert_tool_answer(trajs[1], "178377")
        out = subprocess.run(
            [*CLI, "solve", "--profile", "smol", "--backend", "openai", "--base-url", server.url],
            input="",
            capture_output=True,
            text=True,
            env=env(),
            timeout=300,
        )
        assert out.returncode == 2 and "question" in out.stderr  # argparse: the question is required
        out = subprocess.run(
            [
                *CLI,
                "solve",
                "What is 123*457?",
                "--profile",
                "smol",
                "--backend",
                "openai",
                "--base-url",
                server.url,
                "--model",
                "base",  # what the server serves (a local `make demo PROFILE=smol` adapter would be asked for otherwise)
            ],
            capture_output=True,
            text=True,
            env=env(),
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip().splitlines()[-1] == "answer: 56211"
    finally:
        server.stop()
    assert server.proc.poll() is not None


def test_grpo_through_trl_colocated_vllm_keeps_importance_ratio_near_one(tmp_path):
    """`train` on nano with TRL's own colocated vLLM: the before/after check runs on the trainer's engine (weights
    synced after the last step), the rollouts too. Sampling without top-k/top-p (nano's training sampling), so TRL's
    correction is on, and the ratio of an unchanged policy must be 1 up to numerics."""
    from deepmath_lib.grpo import importance_sampling_kwargs, train

    prof = nano(
        vllm_mode="colocate",
        vllm_train_memory_utilization=MEM,
        prompts_per_step=2,
        num_generations=4,
        train_problems=16,
        learning_rate=1e-9,  # an (almost) unchanged policy between rollout and update
        train_sampling=Sampling(temperature=1.0, top_p=1.0, top_k=0, max_model_tokens=48),
        save_steps=1000,
    )
    assert importance_sampling_kwargs(prof)["vllm_importance_sampling_correction"] is True
    summary = train(
        prof, steps=2, output_dir=tmp_path / "grpo", results_root=tmp_path / "res", heldout=8, progress=False
    )
    assert summary["steps"] == 2 and summary["before"]["n"] == summary["after"]["n"] == 8
    logs = [h for h in summary["log_history"] if "reward" in h]
    assert len(logs) == 2
    ratios = [h[k] for h in logs for k in h if "importance_sampling_ratio" in k and k.endswith("mean")]
    assert ratios, sorted(logs[0])
    print("importance sampling ratio means:", ratios)
    assert all(0.8 < r < 1.25 for r in ratios), ratios
    rows = (tmp_path / "grpo" / "train_metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per step, written once


def test_server_mode_every_rank_generates_and_cpu_weight_sync_is_refused(tmp_path):
    """TRL's server mode is vLLM's OpenAI server in dev mode (what `trl vllm-serve` runs). TRL makes its client on
    the main process only; our rollouts on any other rank make their own and generate through the same server.
    Pushing weights needs vLLM's NCCL weight-transfer engine: on CPU the trainer refuses at start, with this error
    (the README quotes it); the same code trains on GPUs."""
    from types import SimpleNamespace

    from accelerate import PartialState

    from deepmath_lib.backends import TRLVLLMBackend
    from deepmath_lib.datasets import load_problems
    from deepmath_lib.grpo import build_trainer, make_rollout_func, train_problems
    from deepmath_lib.models import load_model, model_dir

    prof = nano(vllm_mode="server")
    path = model_dir(prof)
    extra = ("--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1")
    extra += ("--weight-transfer-config", '{"backend": "nccl"}')
    server = Server(path, tmp_path / "server.log", extra=extra, dev_mode=True)
    try:
        server.wait()
        model, tok = load_model(prof)
        root = server.url[: -len("/v1")]
        # a rank other than the main one: TRL gave it no client
        trainer = SimpleNamespace(
            processing_class=tok,
            temperature=1.0,
            vllm_generation=SimpleNamespace(mode="server"),
            accelerator=PartialState(),  # one process: its barrier returns at once
            args=SimpleNamespace(
                vllm_server_base_url=root,
                vllm_server_host=None,
                vllm_server_port=None,
                vllm_server_timeout=60,
            ),
        )
        backend = TRLVLLMBackend(trainer, max_batch=8)
        assert backend.client is not None
        rollout = make_rollout_func(prof, backend=backend)
        problems = [p["problem"] for p in load_problems("nano", n=4)]
        out = rollout(problems, trainer)
        assert len(out["completion_ids"]) == 4 and sum(out["n_calls"]) > 0
        assert out["logprobs"] is not None and all(
            len(lp) == len(c) for lp, c in zip(out["logprobs"], out["completion_ids"], strict=True)
        )
        model.train()
        with pytest.raises(NotImplementedError, match="needs a CUDA device"):
            build_trainer(
                prof,
                model,
                tok,
                train_problems(prof, n=8),
                tmp_path / "grpo",
                steps=2,
                progress=False,
                vllm_server_base_url=root,
            )
    finally:
        server.stop()


# ----------------------------------------------------------------------------- the way users run it: notebooks

NOTEBOOK_CELL_TIMEOUT = (
    420  # s per cell: a hang (the engine waiting on a blocked loop) fails instead of waiting
)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("notebook", ["02_agent_icl", "04_eval"])
def test_notebook_runs_under_papermill_with_the_vllm_backend(notebook, tmp_path, monkeypatch):
    """A notebook cell runs inside the kernel's event loop, which is where the engine used to hang: notebooks 02 and
    04 on nano's quick settings with `backend="vllm"`, executed by papermill as `make demo` does."""
    import papermill as pm

    monkeypatch.setenv("DEEPMATH_VLLM_MEMORY", str(MEM))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / f"{notebook}.ipynb"
    params = dict(profile="nano", quick=True, progress=False, backend="vllm")
    params |= dict(results_root=str(tmp_path / "results"), figures_dir=str(tmp_path / "figures"))
    params |= dict(work_dir=str(tmp_path / "work"))
    t0 = time.time()
    pm.execute_notebook(
        str(REPO / "notebooks" / f"{notebook}.ipynb"),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(REPO / "notebooks"),
        execution_timeout=NOTEBOOK_CELL_TIMEOUT,
        progress_bar=False,
    )
    print(f"{notebook} on vLLM: {time.time() - t0:.0f} s")
    nb = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "sampling:" in text  # the profile cell ran
    if notebook == "04_eval":
        samples = list((tmp_path / "results" / "nano" / "samples").glob("*.jsonl"))
        assert len(samples) == 4, samples  # one file per configuration, generated through vLLM
        meta = json.loads(samples[0].with_suffix(".meta.json").read_text())
        assert meta["engine"].startswith("vllm:"), meta


SCRIPT = """
import asyncio, time
from deepmath_lib.agent import run_agent
from deepmath_lib.backends import make_backend
from deepmath_lib.profiles import get_profile

if __name__ == "__main__":
    prof = get_profile("nano", backend="vllm", gpu_memory_utilization={mem})

    async def cell():  # as a notebook cell runs: inside an event loop
        backend = make_backend(prof)
        t0 = time.time()
        trajs = run_agent(backend, ["What is 123*457?", "What is 2**10?"], prof, samples=2, seed=0)
        print("run_agent", round(time.time() - t0, 1), "s", [t.finish_reason for t in trajs], flush=True)
        assert all(t.finish_reason != "error" for t in trajs), [t.error for t in trajs]

    asyncio.run(cell())
    print("done", flush=True)  # and the script ends here, the engine never closed by hand
"""


@pytest.mark.timeout(600)
def test_script_runs_the_engine_inside_asyncio_run_and_exits_cleanly(tmp_path):
    """`run_agent` through the vLLM backend from inside `asyncio.run` finishes, and a script that ends right after
    exits 0 with no traceback (the engine is shut down before the interpreter tears it down)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(mem=MEM))
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env(), timeout=540
    )
    print(
        f"script: {time.time() - t0:.0f} s;",
        [ln for ln in out.stdout.splitlines() if ln.startswith("run_agent")],
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "done" in out.stdout.splitlines()  # (vLLM logs its shutdown to stdout after it)
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr[-4000:]


def test_trajectory_at_the_context_limit_ends_with_context_is_stored_and_not_rerun(tmp_path, capsys):
    """An engine whose context is smaller than prompt + budget: the agent asks for no more than the room left, the
    trajectory ends with `context` (vLLM would refuse a longer request), evaluation stores it, and a resumed run
    finds nothing to do."""
    from deepmath_lib.evaluate import evaluate

    prof = nano(max_model_len=80, eval_sampling=Sampling(temperature=1.0, max_model_tokens=400))
    kwargs = dict(datasets=["nano"], configs=["agent"], samples=2, n_problems=3, progress=False)
    evaluate(prof, results_root=tmp_path / "results", **kwargs)
    path = tmp_path / "results" / "nano" / "samples" / "nano__agent.jsonl"
    rows = [json.loads(line) for line in path.open()]
    assert len(rows) == 6, rows  # all stored: none failed
    reasons = [r["finish_reason"] for r in rows]
    assert "context" in reasons and "error" not in reasons, reasons
    capsys.readouterr()
    evaluate(prof, results_root=tmp_path / "results", **kwargs)
    assert "all 6 samples already done" in capsys.readouterr().out
    assert [json.loads(line) for line in path.open()] == rows  # nothing rerun, nothing added


# ------------------------------------------------------------------------------- server mode: update vs generation

RANK_SCRIPT = """
import json, sys
from types import SimpleNamespace

from trl.generation.vllm_client import VLLMClient

from deepmath_lib.grpo import init_distributed, make_rollout_func
from deepmath_lib.nano import build_tokenizer
from deepmath_lib.profiles import Sampling, get_profile

url = sys.argv[1]
prof = get_profile("nano", train_sampling=Sampling(temperature=1.0, max_model_tokens=8))
state = init_distributed(prof)
main = state.is_main_process
client = VLLMClient(base_url=url, connection_timeout=30) if main else None  # TRL gives only the main rank one


def sync_weights():
    # TRL's VLLMGeneration.sync_weights in server mode: the main rank pushes the new weights (here a stand-in
    # transfer that the server makes last a while), every other rank returns at once.
    if main:
        with client.weight_update():
            client._post(f"{url}/update_weights", json={"update_info": {"names": []}})


trainer = SimpleNamespace(
    use_vllm=True,
    processing_class=build_tokenizer(),
    temperature=1.0,
    accelerator=state,
    vllm_generation=SimpleNamespace(mode="server", vllm_client=client, sync_weights=sync_weights),
    args=SimpleNamespace(vllm_server_base_url=url, vllm_server_host=None, vllm_server_port=None,
                         vllm_server_timeout=30),
)
rollout = make_rollout_func(prof)
for step in range(3):  # what GRPOTrainer does each step with a rollout_func: sync the weights, then roll out
    trainer.vllm_generation.sync_weights()
    out = rollout([f"What is {step} + {state.process_index}?"] * 2, trainer)
    assert len(out["completion_ids"]) == 2
state.wait_for_everyone()
print(json.dumps({"rank": state.process_index, "done": True}))
"""


class StandInServer:
    """The endpoints of a `trl vllm-serve` server that TRL's client and our rollouts use, on 127.0.0.1. A weight
    update takes `update_s`; every completion returns EOS at once. It records, on one clock, when each update
    starts and ends and when each completion request arrives."""

    def __init__(self, eos_id: int, update_s: float = 2.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.events: list[tuple[str, float]] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, data: dict) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.reply({"data": [{"id": "nano"}]} if self.path == "/v1/models" else {})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(n) or b"{}")
                now = time.monotonic()
                if self.path == "/v1/completions":
                    with lock:
                        server.events.append(("request", now))
                    lp = {"tokens": [f"token_id:{eos_id}"], "token_logprobs": [-0.5], "top_logprobs": [None]}
                    choices = [
                        {
                            "prompt_token_ids": p,
                            "token_ids": [eos_id],
                            "logprobs": lp,
                            "finish_reason": "stop",
                        }
                        for p in payload["prompt"]
                    ]
                    self.reply({"choices": choices})
                elif self.path == "/start_weight_update":
                    with lock:
                        server.events.append(("update_start", now))
                    self.reply({})
                elif self.path == "/update_weights":
                    time.sleep(update_s)  # the stand-in transfer
                    self.reply({})
                elif self.path == "/finish_weight_update":
                    with lock:
                        server.events.append(("update_end", time.monotonic()))
                    self.reply({})
                else:
                    self.reply({})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.timeout(300)
def test_server_mode_no_rank_generates_while_the_weights_change(tmp_path):
    """Two gloo ranks, each with our rollout function on its own client, against a stand-in TRL server on
    127.0.0.1 whose weight update takes 2 s (vLLM's weight transfer needs CUDA). Each step the main rank pushes
    weights and then every rank rolls out; no generate request may arrive while an update runs."""
    from deepmath_lib.nano import build_tokenizer

    tok = build_tokenizer()
    server = StandInServer(tok.convert_tokens_to_ids("<|im_end|>"), update_s=2.0)
    try:
        port = free_port()
        procs = []
        for rank in range(2):
            e = env() | {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": "2",
                "LOCAL_WORLD_SIZE": "2",
            }
            e |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            e["OMP_NUM_THREADS"] = "1"
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", RANK_SCRIPT, server.url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=e,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        server.stop()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    starts = [t for kind, t in server.events if kind == "update_start"]
    ends = [t for kind, t in server.events if kind == "update_end"]
    requests = [t for kind, t in server.events if kind == "request"]
    assert len(starts) == len(ends) == 3, server.events
    assert len(requests) >= 2 * 3, server.events  # every rank generated at every step
    during = [t for t in requests for s, e in zip(starts, ends, strict=True) if s <= t <= e]
    assert not during, f"{len(during)} generate request(s) arrived during a weight update: {server.events}"
