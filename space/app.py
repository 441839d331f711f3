"""The DeepMath Space: type a math problem and watch a small model write Python, the sandbox run it, and the model
answer from the output.

`make space` serves it on http://127.0.0.1:7860 (`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` change that);
`make space-bundle` writes the folder that is pushed to a Hugging Face Space (README, "The Space").

Anyone can reach a Space, so it is written as a public server:
- every snippet, whether the model wrote it or a visitor did, runs in the repo's Sandbox, whose workers start from
  a scrubbed environment (no tokens) and cannot open sockets, fork, or read outside the Python install and the
  system libraries;
- requests wait in one queue with a concurrency limit sized for a free CPU Space (2 vCPU, 16 GB) and a bounded
  length;
- each request has a token budget (the profile's, capped) and a time budget, checked between model segments;
- models load on first use, so the server answers within seconds of starting; one backend per (profile, weights)
  stays in memory, and all requests for it share one event loop, so concurrent visitors are batched together.

The models: nano with its GRPO-trained weights, smol untrained, and smol with its GRPO adapter (`smol_adapter`: a
local training run's, else the one shipped under `deepmath_lib/weights/smol-grpo`). Under each answer a line says
which kinds of problem the model was trained on, read from its training data.
"""

from __future__ import annotations

import asyncio
import functools
import html
import os
import re
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a server that may be offline

import gradio as gr  # noqa: E402

from deepmath_lib.agent import default_sandbox_factory, prompt_ids_for, run_trajectory  # noqa: E402
from deepmath_lib.backends import make_backend  # noqa: E402
from deepmath_lib.grading import final_boxes  # noqa: E402
from deepmath_lib.models import describe_weights, trained_model_path  # noqa: E402
from deepmath_lib.nano import generate_problems  # noqa: E402
from deepmath_lib.nano.problems import KINDS  # noqa: E402
from deepmath_lib.profiles import Sampling, get_profile  # noqa: E402
from deepmath_lib.prompts import EXAMPLES as SOLVED_EXAMPLES  # noqa: E402
from deepmath_lib.sandbox import Sandbox, truncate  # noqa: E402
from deepmath_lib.trace import box_spans, prose, trace_parts  # noqa: E402

# ------------------------------------------------------------------ budgets (sized for 2 vCPU / 16 GB)
SOLVE_CONCURRENCY = 4  # agent requests at once; they share one batched model call per round
SANDBOX_CONCURRENCY = 2  # visitor snippets at once (each is a worker process of at most SNIPPET_MEMORY_MB)
MAX_QUEUE = 64  # requests waiting beyond that are turned away ("queue full") instead of piling up
TIME_BUDGET_S = 120.0  # per agent request, after its model is loaded
MAX_MODEL_TOKENS = 256  # per agent request; the profile's own budget when smaller (smol: 96)
MAX_PROBLEM_CHARS = 500
MAX_SNIPPET_CHARS = 4000
SNIPPET_TIMEOUT_S = 5.0
SNIPPET_MEMORY_MB = 512
SNIPPET_OUTPUT_CHARS = 4000

EXAMPLES = [
    ["What is 123*457?", "smol", True],
    ["What is 7^23 mod 13?", "nano", True],
    ["Solve 7x + 2 = 198.", "nano", True],
    ["What is 50+48+99?", "nano", True],
    ["What is 4821*37?", "nano", True],
]
SNIPPET_EXAMPLES = [
    "from sympy import factorint\nprint(factorint(2**64 - 1))",
    "print(sum(i * i for i in range(1, 101)))",
    "while True:\n    pass",
    "print(open('/etc/shadow').read())",
]


# ------------------------------------------------------------------ the models on offer
SMOL_GRPO = "smol + GRPO"


def smol_adapter() -> str | None:
    """smol's GRPO-trained LoRA adapter: a local training run's, else the one shipped with the package
    (`trained_model_path`: `deepmath_lib/weights/smol-grpo`); None when this copy holds neither."""
    path = trained_model_path(get_profile("smol"))
    return path if path is not None and (Path(path) / "adapter_config.json").is_file() else None


def model_choices() -> dict[str, tuple[str, str | None]]:
    """The models on offer, by the name the page shows: (profile name, weights path or None for the base model).
    nano: its trained weights (shipped with the package); smol: untrained; smol + GRPO: only with an adapter."""
    choices = {"nano": ("nano", trained_model_path(get_profile("nano"))), "smol": ("smol", None)}
    adapter = smol_adapter()
    if adapter is not None:
        choices[SMOL_GRPO] = ("smol", adapter)
    return choices


MODEL_CHOICES = model_choices()
if SMOL_GRPO in MODEL_CHOICES:  # trained smol on a kind it learned: modular powers, solved with pow in code
    EXAMPLES.insert(1, ["What is 5^37 mod 11?", SMOL_GRPO, True])


@functools.lru_cache(maxsize=4)
def _kind_examples(source: str) -> tuple[str, ...]:
    """One problem of each kind in a training source, in the generator's order (only the nano generator has
    kinds; any other source gives none)."""
    if source != "nano":
        return ()
    first: dict[str, str] = {}
    for p in generate_problems(20 * len(KINDS), split="train", seed=0):
        first.setdefault(p["kind"], p["problem"])
    return tuple(first[k] for k in KINDS if k in first)


def _model_name(profile) -> str:
    """A model's own name: smol's GGUF file names it (SmolLM2-135M-Instruct); otherwise the profile's model."""
    return profile.gguf_file.split(".")[0] if profile.gguf_file else profile.model


def _md_escape(text: str) -> str:
    """Text shown literally in Markdown (a product such as 248*365 must not start emphasis)."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


def knowledge_note(choice: str) -> str:
    """One line on what the model behind `choice` was trained on, and that answers outside it are often wrong."""
    profile_name, path = MODEL_CHOICES[choice]
    profile = get_profile(profile_name)
    if path is None:
        shots = " · ".join(ex.problem for ex in SOLVED_EXAMPLES[: profile.n_shots])
        return (
            f"{choice} is {_model_name(profile)} as released, not trained here. Before each problem it sees "
            f"{profile.n_shots} solved examples ({shots}). Its answers are often wrong, above all for problems "
            "unlike those."
        )
    examples = _kind_examples(profile.train_data)
    if not examples:
        return f"{choice} was trained on {profile.train_data}. Answers to other problems are often wrong."
    return (
        f"{choice} was trained on {len(examples)} kinds of problem only, one of each: {' · '.join(examples)} "
        "Answers to other kinds of problem are often wrong."
    )


# ------------------------------------------------------------------ models and the shared agent loop
class _Models:
    """One backend per (profile, weights), loaded on first use; a second request for a model that is loading
    waits for it instead of loading it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._backends: dict[tuple, object] = {}

    def get(self, profile, path: str | None):
        """The backend for a profile with these weights (None: its base model)."""
        key = (profile.name, path)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._backends:
                self._backends[key] = make_backend(profile, model_path=path)
        return self._backends[key]


MODELS = _Models()

# Every trajectory runs on this one event loop, in a daemon thread: a batched backend collects the requests of all
# live trajectories into one `generate` per round, which only works when they share a loop.
AGENT_LOOP = asyncio.new_event_loop()
threading.Thread(target=AGENT_LOOP.run_forever, name="agent-loop", daemon=True).start()


class _Tap:
    """The shared backend as one request sees it: reports each generated segment as it comes back, and ends the
    trajectory at the next segment once the time budget is spent or the visitor has left. (Cancelling the task
    instead would break the batch it waits in, which other visitors share.)"""

    def __init__(self, backend, emit, deadline: float) -> None:
        self._backend, self._emit, self._deadline = backend, emit, deadline
        self.stopped = False

    def __getattr__(self, name):  # tokenizer, eos_ids and the hooks of the batched backend
        return getattr(self._backend, name)

    async def generate(self, ids, max_new_tokens, sampling, stop, tag=0):
        if self.stopped:
            raise RuntimeError("stopped: the page was closed")
        if time.monotonic() > self._deadline:
            raise TimeoutError(f"time budget of {TIME_BUDGET_S:g} s spent")
        out = await self._backend.generate(ids, max_new_tokens, sampling, stop, tag=tag)
        self._emit("model", self._backend.tokenizer.decode(out.token_ids, skip_special_tokens=True))
        return out


class _TapSandbox:
    """The trajectory's Sandbox, reporting when a snippet starts and the output block it returns."""

    def __init__(self, sandbox, profile, emit) -> None:
        self._sandbox, self._profile, self._emit = sandbox, profile, emit

    def run(self, code):
        self._emit("running", None)
        res = self._sandbox.run(code)
        # the block the agent appends (agent.run_trajectory): the output template around the cut output
        self._emit("output", self._profile.output_template.format(output=res.model_text().rstrip()))
        return res

    def close(self) -> None:
        self._sandbox.close()


# ------------------------------------------------------------------ rendering
_STYLE = {
    "text": "color:#1f2328;background:#ffffff",
    "code": "color:#1f3b8f;background:#eef4ff;border-left:4px solid #4a6fd8",
    "output": "color:#1d5c10;background:#f0faec;border-left:4px solid #3a9a23",
}
_LABEL = {
    "code": "python · runs in the sandbox",
    "ran": "python · ran in the sandbox",
    "unclosed": "python · never closed, so not run",
    "unrun": "python · not run (the model had used its calls)",
    "output": "output",
}


def _strip_tags(kind: str, part: str, profile) -> str:
    """The body of a code or output part, without its call tags or fences."""
    if kind == "code":
        open_tag, close = profile.call_open.strip(), profile.call_close
    elif kind == "output":
        open_tag, close = profile.output_template.split("{output}")
    else:
        return part
    body = part[len(open_tag) :] if part.startswith(open_tag) else part
    body = body[: -len(close)] if close and body.endswith(close) else body
    return body.strip("\n")


_MARK_OPEN, _MARK_CLOSE = '<b class="dm-answer" style="background:#fff3b0">', "</b>"


def _marked(text: str, spans: list[tuple[int, int]]) -> str:
    """HTML of a text with the given character spans set apart as the answer."""
    out, pos = [], 0
    for a, b in spans:
        out += [html.escape(text[pos:a]), _MARK_OPEN, html.escape(text[a:b]), _MARK_CLOSE]
        pos = b
    return "".join(out) + html.escape(text[pos:])


def _code_state(part: str, following: str | None, profile, done: bool) -> str:
    """How a code block fared: "ran" (its output block follows), "unclosed" (the model never closed it, so it was
    not run), "unrun" (closed, but the trajectory ended without running it: the call limit) or "code" (it is
    about to run)."""
    if not part.rstrip("\n").endswith(profile.call_close):
        return "unclosed"
    if following == "output":
        return "ran"
    return "unrun" if done else "code"


def render_trace(
    text: str, profile, running: bool = False, answer: str | None = None, done: bool = False
) -> str:
    """HTML for a (partial) trajectory text: the model's prose, each code block and each output block apart. Each
    code block says whether it ran; once the trajectory is `done`, one it never closed or never ran says so. The
    answer is set apart: every `\\boxed{...}` (braces matched), or when the prose has none (a trained model's short
    "The answer is 56211."), the last place the final `answer` appears in the last prose block."""
    raw = trace_parts(text, profile)
    kinds = [k for k, _ in raw]
    parts = [(k, _strip_tags(k, p, profile), p) for k, p in raw]
    keep = [i for i, (k, b, _) in enumerate(parts) if k != "text" or b.strip()]
    last_text = max((i for i in keep if kinds[i] == "text"), default=-1)
    boxed = any(kinds[i] == "text" and box_spans(parts[i][1]) for i in keep)
    blocks = []
    for i in keep:
        kind, body, part = parts[i]
        if kind == "text":
            body = body.strip("\n")
            spans = box_spans(body)
            if not boxed and answer and i == last_text:
                # standing alone: not inside a word or a longer number, nor an exponent or index (x^3, a_3)
                found = list(re.finditer(rf"(?<![\w.^_])({re.escape(answer)})(?![\w^])", body))
                spans = [found[-1].span(1)] if found else []
            esc = _marked(body, spans)
        else:
            esc = html.escape(body)
        state = kind
        if kind == "code":
            state = _code_state(part, kinds[i + 1] if i + 1 < len(kinds) else None, profile, done)
        label = (
            f'<div style="font:11px sans-serif;color:#667">{_LABEL[state]}</div>' if state in _LABEL else ""
        )
        cls = f"dm-{kind}" + (" dm-notrun" if state in ("unclosed", "unrun") else "")
        blocks.append(
            f'<div class="{cls}" style="{_STYLE[kind]};margin:6px 0;padding:4px 8px">{label}'
            f'<pre style="white-space:pre-wrap;margin:0;font:13px/1.4 monospace;color:inherit;'
            f'background:transparent">{esc}</pre></div>'
        )
    if running:
        blocks.append(
            '<div class="dm-running" style="font:12px sans-serif;color:#667">running the code…</div>'
        )
    return f'<div class="dm-trace">{"".join(blocks)}</div>'


def render_summary(traj, weights: str, choice: str, tool: bool) -> str:
    """Markdown: the answer (and whether the model boxed it or it was read from the text), the tool calls, how the
    trajectory ended, what the model was trained on, and which weights produced it."""
    profile = get_profile(MODEL_CHOICES[choice][0])
    if traj.answer is not None and final_boxes(prose(traj.text, profile)) is None:
        head = f"**Answer: {traj.answer}** (not boxed by the model: read from its text)"
    elif traj.answer is not None:
        head = f"**Answer: {traj.answer}**"
    elif traj.error:
        head = f"**No answer** ({traj.error})"
    else:
        head = f"**No answer** (finish: {traj.finish_reason})"
    calls = f"{len(traj.calls)} tool call{'s' if len(traj.calls) != 1 else ''} ({traj.n_calls_ok} ok)"
    return (
        f"{head} · {calls} · finish: {traj.finish_reason} · {traj.model_tokens} model tokens\n\n"
        f"{_md_escape(knowledge_note(choice))}\n\n"
        f"Weights: {weights} · model {choice} · tool {'on' if tool else 'off'}"
    )


# ------------------------------------------------------------------ handlers
async def solve(problem: str, choice: str, tool: bool):
    """Stream one agent trajectory: yields (trace HTML, summary Markdown) after each model segment and each
    executed snippet, then the final trace, answer, call count and weights."""
    problem = (problem or "").strip()
    if not problem:
        yield "", "Type a problem first."
        return
    if len(problem) > MAX_PROBLEM_CHARS:
        yield "", f"The problem is longer than {MAX_PROBLEM_CHARS} characters."
        return
    if choice not in MODEL_CHOICES:
        yield "", f"Choose one of {', '.join(MODEL_CHOICES)}."
        return
    tool = bool(tool)
    profile_name, path = MODEL_CHOICES[choice]
    profile = get_profile(profile_name)
    note = " (the first use converts its GGUF once, about a minute)" if profile.gguf_file else ""
    yield "", f"Loading the {choice} model{note}…"
    try:
        backend = await asyncio.to_thread(MODELS.get, profile, path)
    except Exception as exc:  # e.g. smol's GGUF could not be fetched
        yield "", f"Could not load the {choice} model ({type(exc).__name__}: {str(exc)[:300]})"
        return
    weights = describe_weights(profile, path)
    budget = min(profile.eval_sampling.max_model_tokens, MAX_MODEL_TOKENS)
    # Greedy: a problem gives the same trace every time, and all requests in a batch share one setting.
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_model_tokens=budget)

    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def emit(kind, value):  # called from the agent loop and the sandbox threads
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    tap = _Tap(backend, emit, time.monotonic() + TIME_BUDGET_S)
    make_sandbox = default_sandbox_factory(profile)

    def sandbox_factory():
        return _TapSandbox(make_sandbox(), profile, emit)

    async def trajectory():
        # the prompt too is tokenized on the agent loop, with every other use of the shared tokenizer
        prompt = prompt_ids_for(backend.tokenizer, problem, profile, tool)
        return await run_trajectory(
            tap, prompt, profile, sampling, tool=tool, problem=problem, sandbox_factory=sandbox_factory
        )

    future = asyncio.run_coroutine_threadsafe(trajectory(), AGENT_LOOP)
    future.add_done_callback(lambda _: emit("done", None))
    status = f"Thinking… (weights: {weights})"
    text, running = "", False
    try:
        yield render_trace(text, profile), status
        while True:
            kind, value = await events.get()
            if kind == "done":
                break
            running = kind == "running"
            if kind in ("model", "output"):
                text += value
            yield render_trace(text, profile, running), status
        traj = future.result()
    finally:
        tap.stopped = True  # a visitor who left stops the trajectory at its next segment
    yield (
        render_trace(traj.text, profile, answer=traj.answer, done=True),
        render_summary(traj, weights, choice, tool),
    )


def run_snippet(code: str):
    """Run a visitor's snippet in a fresh Sandbox; returns (output text, status Markdown)."""
    code = code or ""
    if not code.strip():
        return "", "Type some Python first."
    if len(code) > MAX_SNIPPET_CHARS:
        return "", f"The snippet is longer than {MAX_SNIPPET_CHARS} characters."
    with Sandbox(
        timeout=SNIPPET_TIMEOUT_S, memory_mb=SNIPPET_MEMORY_MB, max_output_chars=SNIPPET_OUTPUT_CHARS
    ) as sb:
        res = sb.run(code)
    text = res.stdout
    if res.error:
        text += ("" if not text or text.endswith("\n") else "\n") + res.error
    if res.timed_out:
        status = f"**Timed out** after {SNIPPET_TIMEOUT_S:g} s (the worker was killed)"
    elif res.error:
        status = f"**Error** after {res.duration_s:.2f} s"
    else:
        status = f"**OK** in {res.duration_s:.2f} s"
    return truncate(text, SNIPPET_OUTPUT_CHARS), status


# ------------------------------------------------------------------ the page
def intro() -> str:
    """The page's introduction, in plain sentences; it names the models on offer."""
    smol = get_profile("smol")
    if SMOL_GRPO in MODEL_CHOICES:
        smol_line = (
            f"**{SMOL_GRPO}** is the same model with a small adapter that GRPO trained in the deepmath-nb "
            "repository, so you can compare the two."
        )
    else:
        smol_line = (
            "This copy of the repository has no GRPO-trained adapter for smol, so smol is shown untrained."
        )
    return f"""# DeepMath, small
Type a math problem and press Solve. A small language model works on it and may write a short Python snippet. The
snippet runs in a sandbox, and its output goes back to the model before it answers.

**nano** is a tiny model with 0.68 million parameters. The deepmath-nb repository builds it and trains it on a CPU
in minutes. **smol** is {_model_name(smol)}, a small chat model that is not trained here. Before each problem
it sees {smol.n_shots} solved examples. {smol_line}

These models know only a few kinds of problem. The line under each answer says which ones; outside them, answers are
often wrong. Code is shown in blue and its output in green. The answer is highlighted. The models always pick their
most likely next word, so the same problem gets the same answer."""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DeepMath, small") as demo:
        gr.Markdown(intro())
        with gr.Tab("Solve"):
            with gr.Row():
                problem = gr.Textbox(label="Problem", placeholder="What is 123*457?", scale=4, max_lines=4)
                with gr.Column(scale=1, min_width=180):
                    profile = gr.Radio(list(MODEL_CHOICES), value="nano", label="Model")
                    tool = gr.Checkbox(value=True, label="Tool (Python sandbox)")
            submit = gr.Button("Solve", variant="primary")
            summary = gr.Markdown(elem_id="dm-summary")
            trace = gr.HTML(elem_id="dm-trace-box")
            gr.Examples(EXAMPLES, inputs=[problem, profile, tool], label="Examples (click one, then Solve)")
            solve_event = dict(
                fn=solve,
                inputs=[problem, profile, tool],
                outputs=[trace, summary],
                concurrency_limit=SOLVE_CONCURRENCY,
                concurrency_id="solve",
                time_limit=int(TIME_BUDGET_S) + 180,  # + the first load of a model
            )
            submit.click(api_name="solve", **solve_event)
            problem.submit(api_name=False, **solve_event)
        with gr.Tab("Sandbox"):
            gr.Markdown(
                f"Run your own Python in the sandbox the agent uses: {SNIPPET_TIMEOUT_S:g} s, "
                f"{SNIPPET_MEMORY_MB} MB, no network, no subprocesses, no files outside the Python install and the "
                "system libraries; math, sympy, numpy, fractions, itertools and a few more modules can be imported."
            )
            code = gr.Code(language="python", label="Snippet", value=SNIPPET_EXAMPLES[0], lines=6)
            run = gr.Button("Run", variant="primary")
            gr.Examples([[s] for s in SNIPPET_EXAMPLES], inputs=[code], label="Examples")
            status = gr.Markdown()
            output = gr.Textbox(label="Output", lines=8, max_lines=30)
            run.click(
                run_snippet,
                [code],
                [output, status],
                api_name="sandbox",
                concurrency_limit=SANDBOX_CONCURRENCY,
                concurrency_id="sandbox",
            )
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo


def main() -> None:
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    build_demo().launch(server_name=host, server_port=port, ssr_mode=False, show_error=False)


if __name__ == "__main__":
    main()
