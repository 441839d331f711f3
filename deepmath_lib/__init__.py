"""DeepMath notebooks library: the support code the notebooks call, in four layers.

Core -- DeepMath's own ideas (each imports only what sits before it here, and the engines):
    trace       the trace format: call tags and stops, code extraction, trace parts, the answer from the model's
                prose, boxed-answer spans, trajectory statistics
    agent       the agent loop: many trajectories at once, snippets in the sandbox, env mask
    grading     answer extraction and equivalence (math-verify), majority vote (`deepmath grade` in cli)
    rewards     GRPO's rewards (accuracy, code use)
    grpo        GRPO training with TRL and the before/after check
    metrics     maj@k, pass@k, bootstrap intervals, paired tests
    evaluate    the evaluation: samples per (dataset, config), summaries, comparisons
    fingerprints  what made stored samples (weights, sampling, prompt, engine), checked before resuming
Engines -- how tokens are generated:
    backends    transformers (continuous batching), vLLM, an OpenAI-compatible server, TRL's vLLM
    batching    the continuous-batching engine (`ENGINE_VERSION`)
    models      weights: base models, trained adapters, the hub, GGUF
Sandbox -- where model-written code runs:
    sandbox/    a forked, locked-down worker per trajectory (zygote, seccomp, limits), the red-team suite
    smolagent   the smolagents executor on the sandbox
Harness -- what runs, stores and shows it:
    cli         the `deepmath` command: parses, validates, prints, sets exit codes (every command's body)
    pipeline    the notebooks in order (papermill), what `make demo` runs
    report      README/docs blocks from the stored results
    bench/      benchmarks (sandbox, grading, rollouts, Space)
    render      traces as notebook HTML and terminal text; plots, tables: figures and tables of results
    regrade     regrades stored samples with the current grader
Shared settings and data:
    profiles (every setting), prompts, datasets, results (the stores), paths, aio (the async bridge),
    lazy (pandas on first use), nano/ (the tiny model built from a seed).
"""

__version__ = "0.1.0"
