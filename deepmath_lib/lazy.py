"""A module imported on first use, so that light commands (`deepmath --help`, `exec`, `grade`) stay light while
the modules they load name pandas at the top."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name`; the first attribute read imports it (`importlib.import_module`)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
