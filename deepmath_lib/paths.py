"""Where things live: the package's own files, the cache for built models, and where outputs go.

Two ways to run:
- **from a source checkout** (`make install`, an editable install, or `PYTHONPATH=<checkout>`): outputs go where
  the repo keeps them, so the committed results and `make demo` stay as they are: results in
  `<checkout>/data/results`, training runs in `<checkout>/runs`, figures in `<checkout>/figures`;
- **from an installed wheel** (`pip install deepmath-nb`, Colab, a Space): outputs go under the current folder's
  `runs/`. Nothing is ever written into the installed package.
The commands `train`, `eval` and `figures` write ad-hoc runs under the output root `work_root()` in both cases:
`runs/<profile>/` holds a profile's results, its trained weights (`grpo/final`) and its figures. Only a publishing
run (`deepmath pipeline --publish`, what `make demo` does) writes the committed `data/results/` and `figures/`.
`DEEPMATH_RESULTS` (a folder) overrides both roots; each command's `--results-root`, `--output-dir` and
`--figures-dir` override them again.

The cache (the nano build, smol's GGUF converted to safetensors, downloads) is per user in both cases, so it is
built once per machine: `DEEPMATH_CACHE`, else `$XDG_CACHE_HOME/deepmath`, else `~/.cache/deepmath`.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The folder above the package: the checkout when running from source; site-packages when installed (never written).
REPO_ROOT = PACKAGE_DIR.parent
PACKAGE_DATA = (
    PACKAGE_DIR / "data"
)  # files the commands read (held-out sets, the original's table), in the wheel


def in_checkout() -> bool:
    """True when the package runs from a source checkout (its pyproject and notebooks sit beside it)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()


def runs_dir() -> Path:
    """Training runs and executed notebooks: `<checkout>/runs`, or `./runs` outside a checkout."""
    return REPO_ROOT / "runs" if in_checkout() else Path.cwd() / "runs"


def results_root() -> Path:
    """Where the library reads and writes results when no root is named: `DEEPMATH_RESULTS`, else the checkout's
    published `data/results`, else `./runs` (from a wheel)."""
    if os.environ.get("DEEPMATH_RESULTS"):
        return Path(os.environ["DEEPMATH_RESULTS"]).expanduser()
    return REPO_ROOT / "data" / "results" if in_checkout() else runs_dir()


def work_root() -> Path:
    """The output root of ad-hoc `train`, `eval` and `figures` runs: `DEEPMATH_RESULTS`, else `runs/` (the
    checkout's, or the current folder's from a wheel); results land in `<root>/<profile>/`."""
    if os.environ.get("DEEPMATH_RESULTS"):
        return Path(os.environ["DEEPMATH_RESULTS"]).expanduser()
    return runs_dir()


def figures_dir() -> Path:
    """The default figures folder: `<checkout>/figures`, or `./runs/figures` outside a checkout."""
    return REPO_ROOT / "figures" if in_checkout() else runs_dir() / "figures"


def user_cache_dir() -> Path:
    """The per-user cache folder (not created): `DEEPMATH_CACHE`, else `$XDG_CACHE_HOME/deepmath`, else
    `~/.cache/deepmath`."""
    if os.environ.get("DEEPMATH_CACHE"):
        return Path(os.environ["DEEPMATH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "deepmath"


def cache_dir() -> Path:
    """The cache for built artefacts (the nano model, smol's converted GGUF, downloads), created on first use."""
    path = user_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the cache folder {path} ({exc.strerror}); set DEEPMATH_CACHE to a writable folder"
        ) from exc
    return path


def checkout_only(what: str) -> str | None:
    """None inside a source checkout; else a one-line reason why `what` (a checkout tool) cannot run here."""
    if in_checkout():
        return None
    return (
        f"{what} works on a source checkout (it reads the repo's notebooks, tests or README); "
        "clone the repository and run it there"
    )
