"""Run the ordered notebooks headless with papermill: the one implementation behind `make demo` and
`deepmath pipeline`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .paths import REPO_ROOT
from .profiles import DEFAULT_PROFILE, PROFILES

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
CONFIGS_DIR = REPO_ROOT / "configs"
RUNS_DIR = REPO_ROOT / "runs"
RESULTS_DIR = REPO_ROOT / "data" / "results"
FIGURES_DIR = REPO_ROOT / "figures"


class PipelineError(RuntimeError):
    """A notebook failed or the run was misconfigured; the message names what."""


def list_notebooks(only: list[str] | None = None, notebook_dir: str | Path | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order; `only` keeps those whose name starts with a prefix."""
    notebooks = sorted(p for p in Path(notebook_dir or NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))
    if only:
        chosen = [p for p in notebooks if any(p.name.startswith(prefix) for prefix in only)]
        missing = [o for o in only if not any(p.name.startswith(o) for p in notebooks)]
        if missing:
            names = ", ".join(p.name for p in notebooks) or "none"
            raise PipelineError(f"no notebook matches {missing}; available: {names}")
        return chosen
    return notebooks


def load_params(profile: str, params_file: str | Path | None = None) -> tuple[Path, dict]:
    """The papermill overrides for a profile (`configs/<profile>.yaml` unless a file is given)."""
    import yaml

    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    path = Path(params_file) if params_file else CONFIGS_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise PipelineError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"params file {path} is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise PipelineError(f"params file {path} must hold a mapping of parameter names to values")
    params.setdefault("profile", profile)
    if params["profile"] != profile:
        raise PipelineError(f"params file {path} is for profile {params['profile']!r}, not {profile!r}")
    return path, params


def output_params(profile: str, publish: bool) -> dict:
    """Where a pipeline run writes, as notebook parameters (relative to notebooks/, the notebooks' cwd).

    Every run trains into the profile's output root, `runs/<profile>/` (weights: `runs/<profile>/grpo/final`, the
    ones `solve` and `eval` then use). Without `publish` its results and figures stay there too
    (`runs/<profile>/eval_summary.csv`, `runs/<profile>/figures/`); with `publish` they go to the committed
    `data/results/<profile>/` and `figures/` (`figures/<profile>/` beside the default profile)."""
    if publish:
        figures = FIGURES_DIR if profile == DEFAULT_PROFILE else FIGURES_DIR / profile
        results = RESULTS_DIR
    else:
        figures, results = RUNS_DIR / profile / "figures", RUNS_DIR

    def rel(path: Path) -> str:
        return os.path.relpath(path, NOTEBOOK_DIR)

    return {"results_root": rel(results), "figures_dir": rel(figures), "work_dir": rel(RUNS_DIR)}


MAX_NOTEBOOK_BYTES = 1_000_000  # a committed notebook stays readable on GitHub


def publish_notebook(executed: str | Path, notebook: str | Path) -> int:
    """Copy the outputs of an executed copy back into the committed notebook, so GitHub shows them.

    The committed notebook keeps its own cells, parameters and metadata: papermill's injected-parameters cell, its
    metadata, timings and stderr (warnings, progress) are dropped, and execution counts are renumbered, so the same
    run gives the same file. Returns the size written; raises PipelineError when the cells differ or it is too big.
    """
    import nbformat

    ran = nbformat.read(str(executed), as_version=4)
    target = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in ran.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if [c.source for c in cells] != [c.source for c in target.cells]:
        raise PipelineError(f"{executed} was not executed from the current {notebook}; rerun it")
    count = 0
    for src, dst in zip(cells, target.cells, strict=True):
        if dst.cell_type != "code":
            continue
        keep = [o for o in src.get("outputs", []) if not (o.output_type == "stream" and o.name == "stderr")]
        for o in keep:
            if "execution_count" in o:
                o["execution_count"] = count + 1
        count += 1
        dst.outputs = keep
        dst.execution_count = count
    text = nbformat.writes(target) + "\n"
    if len(text.encode()) > MAX_NOTEBOOK_BYTES:
        raise PipelineError(f"{notebook} would be {len(text.encode()):,} bytes with its outputs (limit 1 MB)")
    Path(notebook).write_text(text)
    return len(text.encode())


def run_pipeline(
    profile: str = DEFAULT_PROFILE,
    only: list[str] | None = None,
    params_file: str | Path | None = None,
    extra_params: dict | None = None,
    kernel: str = "python3",
    output_dir: str | Path | None = None,
    notebook_dir: str | Path | None = None,
    publish: bool = False,
    times: dict[str, float] | None = None,
) -> list[Path]:
    """Execute the notebooks in order with papermill; executed copies go to `runs/NN_name_<profile>.ipynb`.
    Outputs go where `output_params` says (a params file or `extra_params` may still name other places).
    `publish` writes the committed results (`data/results/`, `figures/`) and, for the default profile (the one the
    committed notebooks show), each notebook's outputs back into the committed notebook (`publish_notebook`);
    without it nothing tracked by git changes.

    Stops at the first failing notebook with a PipelineError naming it; its executed copy stays in `runs/`.
    `times`, when given, receives each notebook's wall seconds under its name.
    """
    import papermill as pm

    path, file_params = load_params(profile, params_file)
    params = {**output_params(profile, publish), **file_params, **(extra_params or {})}
    nb_dir = Path(notebook_dir or NOTEBOOK_DIR)
    notebooks = list_notebooks(only, nb_dir)
    if not notebooks:
        raise PipelineError(f"no notebooks found in {nb_dir}")
    out_dir = Path(output_dir) if output_dir else RUNS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    total_start = time.time()
    print(
        f"pipeline: profile={profile} params={path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
    )
    for nb in notebooks:
        out = out_dir / f"{nb.stem}_{profile}.ipynb"
        start = time.time()
        print(f"[{len(done) + 1}/{len(notebooks)}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(
                str(nb),
                str(out),
                parameters=params,
                kernel_name=kernel,
                cwd=str(nb_dir),
                progress_bar=False,
                log_output=False,
            )
        except pm.PapermillExecutionError as exc:
            raise PipelineError(
                f"notebook {nb.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"executed copy kept for inspection: {out}"
            ) from exc
        except Exception as exc:  # kernel died, missing kernel, ...
            raise PipelineError(f"notebook {nb.name} could not run: {type(exc).__name__}: {exc}") from exc
        print(f"    ok in {time.time() - start:.0f}s -> {out}", flush=True)
        if times is not None:
            times[nb.stem] = round(time.time() - start, 1)
        if publish and profile == DEFAULT_PROFILE:
            size = publish_notebook(out, nb)
            print(f"    outputs published into {nb.name} ({size / 1e3:.0f} kB)", flush=True)
        done.append(out)
    print(f"pipeline: {len(done)} notebook(s) in {time.time() - total_start:.0f}s", flush=True)
    return done
