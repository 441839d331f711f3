"""`deepmath` command line: every notebook step also runs from here."""

from __future__ import annotations

import argparse
import os
import sys

from .paths import REPO_ROOT

RUNS_ROOT = REPO_ROOT / "runs"  # ad-hoc runs write here; committed results change only when published

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault(
    "VLLM_LOGGING_LEVEL", "WARNING"
)  # vLLM logs to stdout; keep traces and JSON lines readable


def _cmd_exec(args: argparse.Namespace) -> int:
    from .sandbox import exec_main

    return exec_main(sys.stdin.read(), timeout=args.timeout, as_json=args.json)


def _cmd_solve(args: argparse.Namespace) -> int:
    from .agent import solve_main

    return solve_main(
        args.question,
        profile=args.profile,
        samples=args.samples,
        seed=args.seed,
        tool=not args.no_tool,
        model=args.model,
        backend=args.backend,
        base_url=args.base_url,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grading import grade_stream

    return grade_stream(sys.stdin, sys.stdout)


def _cmd_train(args: argparse.Namespace) -> int:
    from .grpo import train_main

    return train_main(
        profile=args.profile,
        steps=args.steps,
        output_dir=args.output_dir,
        resume=args.resume,
        vllm_mode=args.vllm_mode,
        heldout=args.heldout,
        results_root=args.results_root,
        train_problems=args.train_problems,
        report_to=args.report_to,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import eval_main

    return eval_main(
        profile=args.profile,
        datasets=args.datasets,
        configs=args.configs,
        samples=args.samples,
        n_problems=args.n_problems,
        trained_model=args.trained_model,
        results_root=args.results_root,
        backend=args.backend,
        base_url=args.base_url,
        prompt=args.prompt,
        original_repo=args.original_repo,
    )


def _cmd_figures(args: argparse.Namespace) -> int:
    from .plots import figures_main

    return figures_main(profile=args.profile, results_root=args.results_root, figures_dir=args.figures_dir)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import conditions

    save = not args.no_save
    cond = conditions()  # stored with the result: the load before the run, not the one the run causes
    if args.what == "sandbox":
        from .bench.sandbox import bench_main

        return bench_main(repeats=args.repeats, save=save, cond=cond)
    if args.what == "grading":
        from .bench.grading import bench_main

        return bench_main(n=args.n or 8000, suite=args.suite, save=save, cond=cond)
    if args.what == "space":
        from .bench.space import bench_main

        return bench_main(save=save, cond=cond)
    from .bench.rollouts import bench_main

    return bench_main(
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
    from .report import report_main

    return report_main(check=args.check)


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from .pipeline import main

    return main(profile=args.profile, only=args.only, params_file=args.params, publish=args.publish)


def build_parser() -> argparse.ArgumentParser:
    from .profiles import DEFAULT_PROFILE, PROFILES

    parser = argparse.ArgumentParser(
        prog="deepmath", description="DeepMath: a math agent that writes and runs Python mid-reasoning."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    profiles = sorted(PROFILES)

    def add_backend(p: argparse.ArgumentParser, base_url: bool = True) -> None:
        p.add_argument(
            "--backend",
            choices=["transformers", "vllm", "openai"],
            default=None,
            help="generation backend (default: the profile's; vllm needs vLLM, `make install-vllm` on a CPU)",
        )
        if base_url:
            p.add_argument(
                "--base-url", default=None, help="openai backend: the server, e.g. http://127.0.0.1:8000/v1"
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

    p = sub.add_parser("exec", help="run the Python snippet on stdin in a fresh sandbox")
    p.add_argument("--timeout", type=float, default=5.0, help="wall-clock limit in seconds (default 5)")
    p.add_argument("--json", action="store_true", help="print {stdout, error, timed_out, duration_s} as JSON")
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("solve", help="solve one question with the agent; last line `answer: X`")
    p.add_argument("question")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profiles)
    p.add_argument(
        "--samples", type=int, default=1, help="trajectories to sample; the answer is the majority"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tool", action="store_true", help="plain chain of thought, no code execution")
    p.add_argument(
        "--model",
        default=None,
        help="model folder or hub id, or 'base' for the untrained model (default: the GRPO-trained model if one exists)",
    )
    add_backend(p)
    add_prompt(p)
    p.set_defaults(func=_cmd_solve)

    p = sub.add_parser("grade", help='JSONL {"gold", "pred"} on stdin -> same rows plus "equal" on stdout')
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser("train", help="GRPO with agentic rollouts (notebook 03)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profiles)
    p.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    p.add_argument("--output-dir", default=None, help="where checkpoints and the trained model go")
    p.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    p.add_argument(
        "--vllm-mode",
        choices=["colocate", "server"],
        default=None,
        help="paper: vLLM in-process or `trl vllm-serve`",
    )
    p.add_argument("--heldout", type=int, default=None, help="held-out problems of the before/after check")
    p.add_argument(
        "--train-problems", type=int, default=None, help="override the profile's training problems"
    )
    p.add_argument(
        "--report-to",
        choices=["none", "trackio", "tensorboard", "wandb"],
        default="none",
        help="live training curves: trackio is local-first (`trackio show` opens them)",
    )
    p.add_argument(
        "--results-root",
        default=str(RUNS_ROOT),
        help="where <profile>/train_summary.json goes (default runs/; data/results/ is what `make demo` publishes)",
    )
    add_prompt(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate the four configurations (notebook 04); resumable")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profiles)
    p.add_argument("--datasets", nargs="+", default=None, help="dataset names or local JSONL/parquet paths")
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        choices=["baseline", "agent", "grpo", "deepmath"],
        help="default: all",
    )
    p.add_argument("--samples", type=int, default=None, help="samples per problem (k of maj@k)")
    p.add_argument("--n-problems", type=int, default=None, help="first N problems of each dataset")
    p.add_argument(
        "--trained-model",
        default=None,
        help="folder or hub id of the trained weights for grpo/deepmath (default: this repo's GRPO output, else the "
        "profile's released adapter)",
    )
    p.add_argument(
        "--results-root",
        default=str(RUNS_ROOT),
        help="where <profile>/ results go (default runs/; data/results/ is what `make demo` publishes)",
    )
    add_backend(p)
    add_prompt(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("figures", help="draw the figures from the results (notebook 05)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profiles)
    p.add_argument("--results-root", default=None)
    p.add_argument("--figures-dir", default=None, help="default figures/")
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser(
        "bench", help="benchmarks; the last line printed is JSON, also stored under data/results/bench/"
    )
    p.add_argument("what", choices=["sandbox", "rollouts", "grading", "space"])
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profiles, help="rollouts only")
    p.add_argument(
        "--n", type=int, default=None, help="rollouts: trajectories (256); grading: answers (8000)"
    )
    p.add_argument(
        "--slots", type=int, default=64, help="rollouts: batch rows of the engine (and of raw generate)"
    )
    p.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="rollouts: trajectories started at once (default 2 x --slots); those beyond --slots queue for freed rows",
    )
    p.add_argument("--seq-n", type=int, default=32, help="rollouts: trajectories of the one-at-a-time run")
    p.add_argument(
        "--rollout-repeats", type=int, default=3, help="rollouts: runs of each measurement (medians reported)"
    )
    p.add_argument("--repeats", type=int, default=30, help="sandbox: repetitions per measurement")
    p.add_argument(
        "--suite", action="store_true", help="grading: also score the labelled suite, ours vs bare"
    )
    p.add_argument("--no-save", action="store_true", help="do not store the result under data/results/bench/")
    add_backend(p, base_url=False)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "report", help="rewrite the generated blocks of README.md and docs/ from the stored results"
    )
    p.add_argument("--check", action="store_true", help="exit 1 if a page differs instead of writing")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("pipeline", help="run the notebooks headless with papermill (what `make demo` does)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {profiles}")
    p.add_argument(
        "--only", nargs="+", default=None, metavar="NN", help="notebook prefixes, e.g. --only 01 03"
    )
    p.add_argument("--params", default=None, help="papermill overrides (default configs/<profile>.yaml)")
    p.add_argument(
        "--publish",
        action="store_true",
        help="write results to data/results/ and figures/ (committed) and nano's notebook outputs into notebooks/; "
        "without it everything goes under runs/",
    )
    p.set_defaults(func=_cmd_pipeline)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr, without the library's file path and source line."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
