"""Where things live: the repo root, the cache for built models, results and figures."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def cache_dir() -> Path:
    """Cache for built artefacts (the nano model, downloaded data); `DEEPMATH_CACHE` overrides."""
    path = Path(os.environ.get("DEEPMATH_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path
