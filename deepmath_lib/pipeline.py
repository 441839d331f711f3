"""Run the ordered notebooks headless with papermill: the one implementation behind `make demo` and
`deepmath pipeline`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .paths import REPO_ROOT
from .profiles import PROFILES

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
RUNS_DIR = REPO_ROOT / "runs"


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
    """The papermill parameters for a profile (`params/<profile>.yaml` unless a file is given)."""
    import yaml

    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    path = Path(params_file) if params_file else PARAMS_DIR / f"{profile}.yaml"
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


def run_pipeline(
    profile: str = "nano",
    only: list[str] | None = None,
    params_file: str | Path | None = None,
    extra_params: dict | None = None,
    kernel: str = "python3",
    output_dir: str | Path | None = None,
    notebook_dir: str | Path | None = None,
) -> list[Path]:
    """Execute the notebooks in order with papermill; executed copies go to `runs/`.

    Stops at the first failing notebook with a PipelineError naming it; its executed copy stays in `runs/`.
    """
    import papermill as pm

    path, params = load_params(profile, params_file)
    params.update(extra_params or {})
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
        out = out_dir / (nb.stem + (f"_{profile}" if profile != "nano" else "") + ".ipynb")
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
        done.append(out)
    print(f"pipeline: {len(done)} notebook(s) in {time.time() - total_start:.0f}s", flush=True)
    return done


def main(profile: str, only: list[str] | None, params_file: str | None) -> int:
    try:
        run_pipeline(profile=profile, only=only, params_file=params_file)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
