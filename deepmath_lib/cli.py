"""`deepmath` command line: every notebook step also runs from here."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from . import evaluate, grpo, pipeline, plots, report
from .agent import question_error, run_agent
from .backends import make_backend
from .bench import conditions
from .bench import grading as bench_grading
from .bench import rollouts as bench_rollouts
from .bench import sandbox as bench_sandbox
from .bench import save as bench_save
from .bench import space as bench_space
from .datasets import DatasetError
from .grading import is_equivalent, majority_vote
from .models import check_hub_models, check_weights_arg, describe_weights, trained_model_path, with_base_model
from .paths import REPO_ROOT, checkout_only, work_root
from .profiles import DEFAULT_PROFILE, PROFILES, get_profile
from .prompts import PromptUnavailable, check_prompt, prompt_for
from .render import print_trace
from .results import EVAL_SUMMARY_COLUMNS
from .sandbox import Sandbox

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault(
    "VLLM_LOGGING_LEVEL", "WARNING"
)  # vLLM logs to stdout; keep traces and JSON lines readable


def _cmd_exec(args: argparse.Namespace) -> int:

    return exec_main(sys.stdin.read(), timeout=args.timeout, as_json=args.json)


def _cmd_solve(args: argparse.Namespace) -> int:
    """`deepmath solve`: print each trace, then the majority answer as the last line `answer: X`.

    `--model`: a model folder or hub id, "base" for the profile's untrained model, or none for this repo's
    GRPO-trained model when one exists (else the base model). `--backend`: transformers, vllm or openai (with
    `--base-url`). `--prompt`: ours or original (default: the one the weights recorded, else the profile's).
    `--base-model`: a folder or hub id replacing the profile's base model. Bad input (the question, `--samples`, a
    hub model out of reach) gets one `error:` line and exit status 2 before any model loads."""
    return solve(
        args.question,
        profile=args.profile,
        samples=args.samples,
        seed=args.seed,
        tool=not args.no_tool,
        model=args.model,
        backend=args.backend,
        base_url=args.base_url,
        base_model=args.base_model,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def solve(
    question: str,
    profile: str = DEFAULT_PROFILE,
    samples: int = 1,
    seed: int = 0,
    tool: bool = True,
    model: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    prompt: str | None = None,
    original_repo: str | None = None,
    base_model: str | None = None,
) -> int:
    """The body of `deepmath solve` (see `_cmd_solve`), callable with keyword arguments; returns the exit status."""
    from rich.console import Console  # rich: only `solve` prints with it

    try:
        prof = get_profile(profile, backend=backend, original_repo=original_repo)
        prof = with_base_model(prof, base_model)
        problem = question_error(question, prof)
        if problem:
            raise ValueError(problem)
        if samples < 1:
            raise ValueError(f"--samples must be at least 1, got {samples}")
        if samples > 1 and prof.eval_sampling.temperature == 0:
            raise ValueError(
                f"{prof.name} samples greedily (temperature 0): its {samples} samples would be identical; "
                "use --samples 1"
            )
        path = None if model == "base" else model or trained_model_path(prof)
        if path is not None:
            check_weights_arg(path)
        prof = prompt_for(prof, path, prompt)
        if prof.backend == "openai" and not base_url:
            raise ValueError("--backend openai needs --base-url http://HOST:PORT/v1")
        if prof.backend != "openai":  # a server holds its own weights
            check_hub_models(prof, path, {"base": "--base-model", "trained": "--model"})
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(highlight=False, stderr=False)
    console.print(f"[dim]model: {describe_weights(prof, path)} | backend: {prof.backend}[/dim]")
    try:
        with console.status(f"loading the {prof.name} model ..."):
            backend = make_backend(prof, model_path=path, **({"base_url": base_url} if base_url else {}))
    except RuntimeError as exc:  # e.g. --backend vllm without vLLM installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sampling = prof.eval_sampling
    trajs = run_agent(backend, [question], prof, samples=samples, tool=tool, sampling=sampling, seed=seed)
    for k, traj in enumerate(trajs):
        console.rule(f"sample {k + 1}/{len(trajs)}")
        print_trace(traj, prof, console)
    backend.close()
    failed = [t for t in trajs if t.finish_reason == "error"]
    if len(failed) == len(trajs):  # nothing was generated: say why instead of answering "none"
        print(f"error: {failed[0].error}", file=sys.stderr)
        print("answer: none", flush=True)
        return 1
    answer, votes = majority_vote([t.answer for t in trajs])
    if samples > 1:
        console.print(f"[dim]majority: {votes}/{len(trajs)} samples[/dim]")
    print(f"answer: {answer if answer is not None else 'none'}", flush=True)
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:

    return grade_main(sys.stdin, sys.stdout)


def _cmd_train(args: argparse.Namespace) -> int:

    return train_main(
        profile=args.profile,
        steps=args.steps,
        output_dir=args.output_dir,
        resume=args.resume,
        vllm_mode=args.vllm_mode,
        heldout=args.heldout,
        results_root=args.results_root or str(work_root()),
        train_problems=args.train_problems,
        report_to=args.report_to,
        base_model=args.base_model,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def _cmd_eval(args: argparse.Namespace) -> int:

    return eval_main(
        profile=args.profile,
        datasets=args.datasets,
        configs=args.configs,
        samples=args.samples,
        n_problems=args.n_problems,
        trained_model=args.trained_model,
        results_root=args.results_root or str(work_root()),
        backend=args.backend,
        base_url=args.base_url,
        base_model=args.base_model,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def _cmd_figures(args: argparse.Namespace) -> int:

    root = args.results_root or str(work_root())
    figures = args.figures_dir or str(work_root() / args.profile / "figures")
    return figures_main(profile=args.profile, results_root=root, figures_dir=figures)


def _cmd_bench(args: argparse.Namespace) -> int:

    save = not args.no_save
    cond = conditions()  # stored with the result: the load before the run, not the one the run causes
    if args.what == "sandbox":
        return bench_sandbox_main(repeats=args.repeats, save=save, cond=cond)
    if args.what == "grading":
        return bench_grading_main(n=args.n or 8000, suite=args.suite, save=save, cond=cond)
    if args.what == "space":
        return bench_space_main(save=save, cond=cond)

    return bench_rollouts_main(
        profile=args.profile,
        n=args.n or 256,
        backend=args.backend,
        save=save,
        slots=args.slots,
        in_flight=args.in_flight,
        seq_n=args.seq_n,
        repeats=args.rollout_repeats,
        cond=cond,
    )


def _cmd_report(args: argparse.Namespace) -> int:

    return report_main(check=args.check)


def _cmd_pipeline(args: argparse.Namespace) -> int:

    return pipeline_main(profile=args.profile, only=args.only, params_file=args.params, publish=args.publish)


# ------------------------------------------------------------------ the commands' bodies: validate, run, print


def _gradable(value: Any) -> bool:
    """A string, or a finite JSON number (not a boolean, which JSON keeps apart from numbers)."""
    if isinstance(value, str):
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _as_text(value: str | int | float) -> str:
    """The answer text of a gold or prediction: strings as they are, numbers as JSON writes them."""
    return value if isinstance(value, str) else json.dumps(value)


def grade_main(inp: TextIO, out: TextIO) -> int:
    """`deepmath grade`: read JSONL rows ``{"gold": str | number, "pred": str | number}`` from ``inp``, write each
    row back (values as given) with ``"equal": bool``. Numbers are graded as their JSON text (``2``, ``0.5``), as
    JSONL datasets often store golds. A bad line (not JSON, not an object, a missing key, a value that is neither a
    string nor a number) gives a row with ``"equal": false`` and ``"error"``, plus a message on stderr; processing
    continues. Blank lines are skipped. Returns 1 if any line was bad, else 0."""
    bad = 0
    for lineno, line in enumerate(inp, start=1):
        if not line.strip():
            continue
        row: dict[str, Any]
        error: str | None = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            obj, error = None, f"line {lineno}: not valid JSON ({exc.msg})"
        if error is None and not isinstance(obj, dict):
            error = f"line {lineno}: expected a JSON object, got {type(obj).__name__}"
        row = dict(obj) if isinstance(obj, dict) else {}
        if error is None:
            missing = [k for k in ("gold", "pred") if k not in row]
            if missing:
                error = f"line {lineno}: missing key(s) {', '.join(missing)}"
            else:
                wrong = [k for k in ("gold", "pred") if not _gradable(row[k])]
                if wrong:
                    error = "; ".join(
                        f"line {lineno}: {k!r} must be a string or a number, got {type(row[k]).__name__}"
                        for k in wrong
                    )
        if error is None:
            row["equal"] = is_equivalent(_as_text(row["gold"]), _as_text(row["pred"]))
        else:
            bad += 1
            row["equal"] = False
            row["error"] = error
            print(f"deepmath grade: {error}", file=sys.stderr)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()
    return 1 if bad else 0


def exec_main(code: str, timeout: float = 5.0, as_json: bool = False) -> int:
    """`deepmath exec`: run one snippet in a fresh Sandbox. Exit 0 even if the snippet fails (that is data)."""
    try:
        with Sandbox(timeout=timeout, max_output_chars=100_000) as sb:
            res = sb.run(code)
    except ValueError as e:  # bad settings
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001
        print(f"sandbox failure: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(res.to_dict()))
    else:
        text = res.stdout
        if res.error:
            text += ("" if not text or text.endswith("\n") else "\n") + res.error
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def report_main(check: bool = False, readme: str | Path | None = None) -> int:
    """Fill every block of README.md and docs/*.md (or of `readme` alone) from the stored results; with `check`,
    exit 1 when a page differs and write nothing. Every block a source makes must appear on some page."""
    paths = [Path(readme)] if readme else report.doc_files()
    blocks = report.all_blocks()
    try:
        pages = {path: path.read_text() for path in paths}
        new = {path: report.render(text, blocks) for path, text in pages.items()}
        if readme is None:
            shown = {m.group(1) for text in pages.values() for m in report.MARKER.finditer(text)}
            missing = sorted(set(blocks) - shown)
            if missing:
                raise ValueError(f"blocks on no page: {', '.join(missing)}")
    except (
        OSError,
        ValueError,
        KeyError,
    ) as exc:  # a page or block missing, a results file missing or malformed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    changed = [path for path in paths if new[path] != pages[path]]
    if check:
        for path in changed:
            print(f"error: {path} differs from the stored results; run `deepmath report`", file=sys.stderr)
        if changed:
            return 1
        print(f"{len(paths)} page(s) up to date")
        return 0
    for path in changed:
        path.write_text(new[path])
        print(f"{path}: rewritten")
    print(f"{len(paths)} page(s), {len(changed)} rewritten")

    figures = (Path(readme).parent if readme else REPO_ROOT) / "figures"
    fig = plots.plot_profiles(None, figures)  # the profiles side by side, from the same stored results
    if fig is not None:
        print(f"{fig}: redrawn")
    return 0


def figures_main(
    profile: str = DEFAULT_PROFILE, results_root: str | None = None, figures_dir: str | None = None
) -> int:
    """CLI entry (``deepmath figures``): draw what the results allow, print the saved files; 1 without a summary."""
    try:
        saved = plots.make_all_figures(profile, results_root, figures_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"figures: {len(saved)} file(s) saved")
    for path in saved:
        print(f"  {path}")
    return 0


def train_main(
    profile: str = DEFAULT_PROFILE,
    steps: int | None = None,
    output_dir: str | None = None,
    resume: bool = False,
    vllm_mode: str | None = None,
    heldout: int | None = None,
    results_root: str | None = None,
    train_problems: int | None = None,
    report_to: str = "none",
    prompt: str | None = None,
    original_repo: str | None = None,
    base_model: str | None = None,
) -> int:
    """`deepmath train`: the same run as notebook 03; prints a JSON line with the before/after figures.
    `report_to="trackio"` logs the training curves live to a local trackio project (`trackio show`).
    `base_model`: a folder or hub id replacing the profile's base model (GRPO's start)."""
    for flag, value in (("--steps", steps), ("--heldout", heldout), ("--train-problems", train_problems)):
        if value is not None and value <= 0:
            print(f"error: {flag} must be positive, got {value}", file=sys.stderr)
            return 2
    try:  # the prompt's files (an unknown prompt, unreadable files) and hub models, before any model loads
        prof = get_profile(
            profile,
            vllm_mode=vllm_mode,
            train_problems=train_problems,
            prompt=prompt,
            original_repo=original_repo,
        )
        prof = with_base_model(prof, base_model)
        check_prompt(prof)
        check_hub_models(prof, None, {"base": "--base-model"})
    except (PromptUnavailable, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = grpo.train(
            prof,
            steps=steps,
            output_dir=output_dir,
            resume=resume,
            heldout=heldout,
            results_root=results_root,
            report_to=report_to,
        )
    except grpo.ReportToUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not summary.get("main", True):
        return 0
    keys = ("steps", "code_use_rate_before", "code_use_rate_after", "accuracy_before", "accuracy_after")
    print(json.dumps({k: summary[k] for k in keys} | {"model_dir": summary["model_dir"]}))
    return 0 if not math.isnan(summary["accuracy_after"]) else 1


def eval_main(
    profile: str = DEFAULT_PROFILE,
    datasets: list[str] | None = None,
    configs: list[str] | None = None,
    samples: int | None = None,
    n_problems: int | None = None,
    trained_model: str | None = None,
    results_root: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    prompt: str | None = None,
    original_repo: str | None = None,
    base_model: str | None = None,
) -> int:
    """`deepmath eval`: prints the summary table; errors name what was wrong. `base_model`: a folder or hub id
    replacing the profile's base model."""

    try:
        prof = get_profile(profile, backend=backend, original_repo=original_repo)
        prof = with_base_model(prof, base_model)
        kwargs = {"base_url": base_url} if base_url else None
        summary, _ = evaluate.evaluate(
            prof,
            datasets,
            configs,
            samples,
            n_problems,
            trained_model,
            results_root,
            backend_kwargs=kwargs,
            prompt=prompt,
        )
    except (FileNotFoundError, ValueError, DatasetError, evaluate.GenerationFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the summary's leading columns, up to the mean model length; pass@k left out of the printout
    shown = EVAL_SUMMARY_COLUMNS[: EVAL_SUMMARY_COLUMNS.index("mean_len_model_tokens") + 1]
    cols = [c for c in shown if c != "pass_at_k"]
    print(summary[cols].round(3).to_string(index=False))
    return 0


def bench_rollouts_main(
    profile: str = DEFAULT_PROFILE,
    n: int = 256,
    backend: str | None = None,
    save: bool = True,
    slots: int = 64,
    seq_n: int = 32,
    repeats: int = 3,
    in_flight: int | None = None,
    cond: dict | None = None,
) -> int:
    in_flight = in_flight or 2 * slots
    if n < 2 or slots < 1 or seq_n < 1 or repeats < 1 or in_flight < slots:
        print(
            "error: need --n >= 2, --slots, --seq-n and --rollout-repeats >= 1 and --in-flight >= --slots "
            f"(got {n}, {slots}, {seq_n}, {repeats}, {in_flight})",
            file=sys.stderr,
        )
        return 2
    try:
        res = bench_rollouts.measure(
            profile, n, slots=slots, seq_n=seq_n, backend=backend, repeats=repeats, in_flight=in_flight
        )
    except (
        ValueError,
        RuntimeError,
    ) as exc:  # e.g. --backend openai (no server to bench), vLLM not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'mode':<14}{'trajectories':>13}{'seconds':>9}{'model tok':>11}{'tok/s':>9}{'calls':>7}")
    for mode in ("concurrent", "presandboxed", "sequential"):
        print(
            f"{mode:<14}{res[f'{mode}_trajectories']:>13}{res[f'{mode}_seconds']:>9}{res[f'{mode}_model_tokens']:>11}"
            f"{res[f'{mode}_model_tokens_per_s']:>9}{res[f'{mode}_calls']:>7}"
        )
    print(
        f"{'raw':<14}{res['raw_rows']:>13} rows x {res['raw_new_tokens_per_row']} tokens{res['raw_model_tokens_per_s']:>12}"
    )
    print(
        f"{'raw':<14}{1:>13} row  x {res['raw_one_row_new_tokens_per_row']} tokens{res['raw_one_row_model_tokens_per_s']:>12}"
    )
    print(
        f"speedup (tokens/s, concurrent vs sequential): {res['speedup']}x   fraction of raw: {res['fraction_of_raw']}"
        f"   raw batched vs one row: {res['raw_speedup']}x   sandbox share: {res['sandbox_share']}"
    )
    if save:
        name = f"rollouts_{res['profile']}_{res['backend']}"
        print(f"saved {bench_save(name, res, cond=cond)}")
    print(json.dumps(res))
    return 0


def bench_space_main(save: bool = True, cond: dict | None = None) -> int:
    try:
        res = bench_space.measure()
    except (RuntimeError, ImportError) as exc:  # e.g. the space extra (gradio_client) not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"page up (HTTP 200) after {res['startup_s']} s; smol's GGUF converted in {res['gguf_convert_s']} s"
    )
    print(
        f"load: {res['requests']} requests in {res['seconds']} s, {res['normal_answered']}/{res['normal']} problems "
        f"answered, {res['hostile_bounded']}/{res['hostile']} snippets ended in an error or a timeout; app RSS "
        f"{res['rss_mb_before']} MB before, {res['rss_mb_peak']} MB peak, {res['rss_mb_after']} MB after"
    )
    if save:
        print(f"saved {bench_save('space', res, cond=cond)}")
    print(json.dumps(res))
    return 0


def bench_sandbox_main(repeats: int = 30, save: bool = True, cond: dict | None = None) -> int:
    if repeats < 1:
        print(f"error: --repeats must be at least 1, got {repeats}", file=sys.stderr)
        return 2
    res = bench_sandbox.measure(repeats=repeats)
    print(bench_sandbox.format_table(res))
    if save:
        print(f"saved {bench_save('sandbox', res, cond=cond)}")
    print(json.dumps(res))
    return 0


def bench_grading_main(
    n: int = 8000, suite: bool = False, save: bool = True, cond: dict | None = None
) -> int:
    """`deepmath bench grading`: the timing runs in a fresh interpreter, so caches start cold."""
    if n < 1:
        print(f"error: --n must be at least 1, got {n}", file=sys.stderr)
        return 2
    code = f"import json; from deepmath_lib.bench.grading import measure; print(json.dumps(measure({n})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"error: the grading benchmark failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"graded {res['n']} answers in {res['seconds']} s ({res['rows_per_s']} per second)")
    if suite:
        res["suite"] = bench_grading.suite_agreement()
        s = res["suite"]
        print(
            f"suite of {s['suite_n']} labelled cases: ours {s['ours']:.1%}, bare math-verify {s['bare_math_verify']:.1%}"
        )
    if save:
        print(f"saved {bench_save('grading', res, cond=cond)}")
    print(json.dumps(res))
    return 0


def pipeline_main(
    profile: str, only: list[str] | None, params_file: str | None, publish: bool = False
) -> int:
    """`deepmath pipeline` (what `make demo` runs). A whole published run with the profile's own parameters also
    stores its time per notebook, with the machine's conditions, as `data/results/bench/demo_<profile>.json`."""

    times: dict[str, float] = {}
    start, cond = time.time(), conditions()
    try:
        pipeline.run_pipeline(
            profile=profile, only=only, params_file=params_file, publish=publish, times=times
        )
    except pipeline.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if publish and only is None and params_file is None:
        record = {"profile": profile, "seconds": round(time.time() - start, 1), "notebooks": times}
        bench_save(f"demo_{profile}", record, cond=cond)
    return 0


# Upper bounds of the numeric options: generous for real runs, but a typo (an extra few zeros) is refused before
# anything loads instead of running until it is killed.
SOLVE_MAX_SAMPLES = 64  # solve prints every trace; `eval` is the command for many samples
EVAL_MAX_SAMPLES = 1024
MAX_PROBLEMS = 1_000_000
MAX_STEPS = 100_000
MAX_SECONDS = 600.0  # one snippet's wall clock; the paper profile gives 20 s


def _bounded(kind: type, low: float, high: float, *, above: bool = False):
    """An argparse `type` that parses an int or float and checks `low <= value <= high` (`low < value` with
    `above`); anything else is refused with one line naming the range."""
    name = "an integer" if kind is int else "a number"

    def show(v: float) -> str:
        return f"{int(v):,}" if v == int(v) else f"{v:g}"

    low_text = f"> {show(low)}" if above else f">= {show(low)}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be {name} {low_text} and <= {show(high)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    parse.bounds = (kind, low, high, above)  # for tests/test_cli.py: every numeric option has both bounds
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's own error style: one `error:` line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already says it (a `None` default means "the
    profile's", which the help states in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


# The commands in the order of the notebooks (01 exec, 02 solve, 03 train, 04 eval, 05 figures), then the rest.
COMMAND_ORDER = ("exec", "solve", "train", "eval", "figures", "grade", "bench", "report", "pipeline")


def build_parser() -> argparse.ArgumentParser:

    parser = _Parser(
        prog="deepmath",
        description="DeepMath: a math agent that writes and runs Python mid-reasoning.",
        epilog="Outputs: <checkout>/data/results when run from a source checkout, else ./runs/ "
        "(DEEPMATH_RESULTS overrides); built models are cached in DEEPMATH_CACHE or ~/.cache/deepmath.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    profiles = sorted(PROFILES)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)

    def add_profile(p: argparse.ArgumentParser, what: str = "") -> None:
        p.add_argument(
            "--profile",
            default=DEFAULT_PROFILE,
            choices=profiles,
            help=f"scale of the run: nano (CPU, minutes), smol (SmolLM2-135M on a CPU), paper (GPUs){what}",
        )

    def add_backend(p: argparse.ArgumentParser, base_url: bool = True) -> None:
        p.add_argument(
            "--backend",
            choices=["transformers", "vllm", "openai"],
            default=None,
            help="generation backend (default: the profile's; vllm needs vLLM, `make install-vllm` on a CPU)",
        )
        if base_url:
            p.add_argument(
                "--base-url",
                default=None,
                help="openai backend: the server, e.g. http://127.0.0.1:8000/v1 (default: none)",
            )

    def add_base_model(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--base-model",
            default=None,
            metavar="PATH_OR_ID",
            help="folder (or hub id) of the base model, e.g. a local copy of the paper's Qwen3 (default: the "
            "profile's)",
        )

    def add_prompt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--prompt",
            choices=["ours", "original"],
            default=None,
            help="whose prompt: ours, or IntelLabs/DeepMath's read from its files (default: the one the trained "
            "weights recorded, else the profile's; paper: original)",
        )
        p.add_argument(
            "--original-repo",
            default=None,
            metavar="PATH",
            help="local clone of IntelLabs/DeepMath for --prompt original (default: $DEEPMATH_ORIGINAL_REPO)",
        )

    def add_results_root(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--results-root",
            default=None,
            help=f"{what} (default: runs/, the ad-hoc output root; DEEPMATH_RESULTS overrides; data/results/ "
            "is what `make demo` publishes)",
        )

    def add_exec(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--timeout",
            type=_bounded(float, 0, MAX_SECONDS, above=True),
            default=5.0,
            help="wall-clock limit in seconds",
        )
        p.add_argument(
            "--json", action="store_true", help="print {stdout, error, timed_out, duration_s} as JSON"
        )
        p.set_defaults(func=_cmd_exec)

    def add_solve(p: argparse.ArgumentParser) -> None:
        p.add_argument("question", help="the question, in quotes")
        add_profile(p)
        p.add_argument(
            "--samples",
            type=_bounded(int, 1, SOLVE_MAX_SAMPLES),
            default=1,
            help="trajectories to sample; the answer is the majority (more than 1 needs a sampling profile)",
        )
        p.add_argument(
            "--seed", type=_bounded(int, 0, 2**32 - 1), default=0, help="random seed of the sampling"
        )
        p.add_argument("--no-tool", action="store_true", help="plain chain of thought, no code execution")
        p.add_argument(
            "--model",
            default=None,
            help="model folder or hub id, or 'base' for the untrained model (default: the GRPO-trained model if one "
            "exists)",
        )
        add_base_model(p)
        add_prompt(p)
        add_backend(p)
        p.set_defaults(func=_cmd_solve)

    def add_train(p: argparse.ArgumentParser) -> None:
        add_profile(p)
        p.add_argument(
            "--steps",
            type=_bounded(int, 1, MAX_STEPS),
            default=None,
            help="GRPO steps (default: the profile's)",
        )
        p.add_argument(
            "--output-dir",
            default=None,
            help="where checkpoints and the trained model go (default: runs/<profile>/grpo in a source checkout, "
            "else ./runs/<profile>/grpo)",
        )
        p.add_argument(
            "--resume", action="store_true", help="resume from the last checkpoint in --output-dir"
        )
        p.add_argument(
            "--vllm-mode",
            choices=["colocate", "server"],
            default=None,
            help="paper: vLLM in-process or `trl vllm-serve` (default: the profile's)",
        )
        p.add_argument(
            "--heldout",
            type=_bounded(int, 1, MAX_PROBLEMS),
            default=None,
            help="held-out problems of the before/after check (default: the profile's)",
        )
        p.add_argument(
            "--train-problems",
            type=_bounded(int, 1, 100 * MAX_PROBLEMS),
            default=None,
            help="training problems (default: the profile's)",
        )
        p.add_argument(
            "--report-to",
            choices=["none", "trackio", "tensorboard", "wandb"],
            default="none",
            help="live training curves: trackio is local-first (`trackio show` opens them)",
        )
        add_results_root(p, "where train_summary.json goes")
        add_base_model(p)
        add_prompt(p)
        p.set_defaults(func=_cmd_train)

    def add_eval(p: argparse.ArgumentParser) -> None:
        add_profile(p)
        p.add_argument(
            "--datasets",
            nargs="+",
            default=None,
            help="dataset names or local JSONL/parquet paths (default: the profile's)",
        )
        p.add_argument(
            "--configs",
            nargs="+",
            default=None,
            choices=["baseline", "agent", "grpo", "deepmath"],
            help="configurations to run (default: all four)",
        )
        p.add_argument(
            "--samples",
            type=_bounded(int, 1, EVAL_MAX_SAMPLES),
            default=None,
            help="samples per problem, the k of maj@k (default: the profile's; greedy profiles take 1)",
        )
        p.add_argument(
            "--n-problems",
            type=_bounded(int, 1, MAX_PROBLEMS),
            default=None,
            help="first N problems of each dataset (default: the profile's, else the whole set)",
        )
        p.add_argument(
            "--trained-model",
            default=None,
            help="folder or hub id of the trained weights for grpo/deepmath (default: this repo's GRPO output, "
            "else the profile's released weights)",
        )
        add_results_root(p, "where summaries and samples go")
        add_base_model(p)
        add_prompt(p)
        add_backend(p)
        p.set_defaults(func=_cmd_eval)

    def add_figures(p: argparse.ArgumentParser) -> None:
        add_profile(p)
        add_results_root(p, "where the results are read from")
        p.add_argument(
            "--figures-dir",
            default=None,
            help="where the figures go (default: runs/<profile>/figures)",
        )
        p.set_defaults(func=_cmd_figures)

    def add_grade(p: argparse.ArgumentParser) -> None:
        p.set_defaults(func=_cmd_grade)

    def add_bench(p: argparse.ArgumentParser) -> None:
        p.add_argument("what", choices=["sandbox", "rollouts", "grading", "space"], help="what to measure")
        add_profile(p, "; rollouts only")
        p.add_argument(
            "--n",
            type=_bounded(int, 1, MAX_PROBLEMS),
            default=None,
            help="rollouts: trajectories (default 256); grading: answers (default 8000)",
        )
        p.add_argument(
            "--slots",
            type=_bounded(int, 1, 4096),
            default=64,
            help="rollouts: batch rows of the engine (and of raw generate)",
        )
        p.add_argument(
            "--in-flight",
            type=_bounded(int, 1, 65536),
            default=None,
            help="rollouts: trajectories started at once (default: 2 x --slots); those beyond --slots queue for "
            "freed rows",
        )
        p.add_argument(
            "--seq-n",
            type=_bounded(int, 1, 100_000),
            default=32,
            help="rollouts: trajectories of the one-at-a-time run",
        )
        p.add_argument(
            "--rollout-repeats",
            type=_bounded(int, 1, 1000),
            default=3,
            help="rollouts: runs of each measurement (medians reported)",
        )
        p.add_argument(
            "--repeats",
            type=_bounded(int, 1, 100_000),
            default=30,
            help="sandbox: repetitions per measurement",
        )
        p.add_argument(
            "--suite", action="store_true", help="grading: also score the labelled suite, ours vs bare"
        )
        p.add_argument("--no-save", action="store_true", help="print the result without storing it")
        add_backend(p, base_url=False)
        p.set_defaults(func=_cmd_bench)

    def add_report(p: argparse.ArgumentParser) -> None:
        p.add_argument("--check", action="store_true", help="exit 1 if a page differs instead of writing")
        p.set_defaults(func=_cmd_report)

    def add_pipeline(p: argparse.ArgumentParser) -> None:
        # no `choices`: the pipeline names an unknown profile itself, next to its params file
        p.add_argument(
            "--profile", default=DEFAULT_PROFILE, help=f"one of {profiles}, the notebooks' profile"
        )
        p.add_argument(
            "--only",
            nargs="+",
            default=None,
            metavar="NN",
            help="notebook prefixes, e.g. --only 01 03 (default: all)",
        )
        p.add_argument("--params", default=None, help="papermill overrides (default: configs/<profile>.yaml)")
        p.add_argument(
            "--publish",
            action="store_true",
            help="write results to data/results/ and figures/ (committed) and the default profile's notebook "
            "outputs into notebooks/; without it everything goes under runs/",
        )
        p.set_defaults(func=_cmd_pipeline)

    commands = {
        "exec": ("run the Python snippet on stdin in a fresh sandbox (notebook 01)", add_exec),
        "solve": ("solve one question with the agent; last line `answer: X` (notebook 02)", add_solve),
        "train": ("GRPO with agentic rollouts (notebook 03)", add_train),
        "eval": ("evaluate the four configurations (notebook 04); resumable", add_eval),
        "figures": ("draw the figures from the results (notebook 05)", add_figures),
        "grade": (
            'JSONL {"gold", "pred"} on stdin (strings or numbers) -> same rows plus "equal"',
            add_grade,
        ),
        "bench": ("benchmarks; the last line printed is JSON, also stored under <results>/bench/", add_bench),
        "report": (
            "rewrite the generated blocks of README.md and docs/ from data/results (source checkout)",
            add_report,
        ),
        "pipeline": (
            "run the notebooks headless with papermill, what `make demo` does (source checkout)",
            add_pipeline,
        ),
    }
    for name in COMMAND_ORDER:
        help, fill = commands[name]
        fill(add(name, help))
    return parser


def _checkout_only(args: argparse.Namespace) -> str | None:
    """Why a command that reads the checkout's own files (notebooks, README, tests, the Space) cannot run here."""

    if args.command in ("report", "pipeline"):
        return checkout_only(f"`deepmath {args.command}`")
    if args.command == "bench" and (args.what == "space" or (args.what == "grading" and args.suite)):
        return checkout_only(f"`deepmath bench {args.what}{' --suite' if args.suite else ''}`")
    return None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr, without the library's file path and source line."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except (
        SystemExit
    ) as exc:  # --help (0) or a usage error (2, its line already printed): a status, in-process too
        return exc.code if isinstance(exc.code, int) else 2
    why = _checkout_only(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
