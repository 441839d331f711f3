"""A fast process sandbox for model-written Python: zygote-forked, locked-down, stateful workers.

    with Sandbox(timeout=5) as sb:
        sb.run("x = 2**10")
        print(sb.run("x + 1").model_text())   # 1025

See notebooks/01_executor for a tour, and `deepmath bench sandbox` for the latency numbers. Every OS layer is
optional; DEEPMATH_SANDBOX_DISABLE=landlock,seccomp (or `Sandbox(disable=...)`) runs as a container without them
would, and `python -m deepmath_lib.sandbox.redteam --layers` shows what each layer stops.
"""

from .core import (
    DEFAULT_ALLOWED_IMPORTS,
    LAYERS,
    RunResult,
    Sandbox,
    SandboxError,
    neutralize,
    parse_disable,
    sandbox_features,
    start_zygote,
    stop_zygote,
    truncate,
)
from .smol import SmolagentsExecutor
from .values import TextForm

__all__ = [
    "DEFAULT_ALLOWED_IMPORTS",
    "LAYERS",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "SmolagentsExecutor",
    "TextForm",
    "neutralize",
    "parse_disable",
    "sandbox_features",
    "start_zygote",
    "stop_zygote",
    "truncate",
]
