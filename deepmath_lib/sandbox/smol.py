"""Our Sandbox behind smolagents' `PythonExecutor` interface: ``CodeAgent(tools=[], model=m, executor=SmolagentsExecutor())``.

Each call returns a `CodeOutput` as smolagents' remote executors do: `output` is the value of the snippet's bare last
expression (None after a statement) as a Python value, `logs` what it printed, `is_final_answer` whether it called
`final_answer(x)` (then `output` is x). Values travel from the worker as tagged JSON (`sandbox.values`): numbers
(big integers included), strings, booleans, None, lists, tuples, dicts and sets come back as themselves; numpy,
sympy and any other values as their text form (`TextForm`, a str). Nothing the worker sends is unpickled or
evaluated on the host. Variables persist between calls; an error raises smolagents' `InterpreterError`, with what
was printed before it in `state["_print_outputs"]`.

`final_answer(x)` ends the step natively inside the worker; any other tool runs on the host, called from the
worker over its channel (JSON arguments and results only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .core import DEFAULT_ALLOWED_IMPORTS, Sandbox

try:  # smolagents is a dependency, but keep the sandbox importable without it
    from smolagents.local_python_executor import CodeOutput, InterpreterError, PythonExecutor
except ImportError:  # pragma: no cover
    from dataclasses import dataclass

    @dataclass
    class CodeOutput:  # type: ignore[no-redef]
        output: Any
        logs: str
        is_final_answer: bool

    PythonExecutor = object  # type: ignore[assignment,misc]

    class InterpreterError(ValueError):  # type: ignore[no-redef]
        pass


class SmolagentsExecutor(PythonExecutor):
    def __init__(
        self,
        additional_authorized_imports: Iterable[str] = (),
        timeout: float = 5.0,
        memory_mb: int = 1024,
        max_print_outputs_length: int = 50_000,
    ) -> None:
        imports = [m for m in additional_authorized_imports if m != "*"]
        self.allowed_imports = tuple(
            dict.fromkeys([*DEFAULT_ALLOWED_IMPORTS, *(m.split(".")[0] for m in imports)])
        )
        self.timeout, self.memory_mb, self.max_len = timeout, memory_mb, max_print_outputs_length
        self.tools: dict[str, Any] = {}
        self.variables: dict[str, Any] = {}
        self.state: dict[str, Any] = {"_print_outputs": ""}
        self._sb: Sandbox | None = None

    def _sandbox(self) -> Sandbox:
        if self._sb is None:
            host_tools = {k: v for k, v in self.tools.items() if k != "final_answer"}
            self._sb = Sandbox(
                timeout=self.timeout,
                memory_mb=self.memory_mb,
                max_output_chars=self.max_len,
                allowed_imports=self.allowed_imports,
                tools=host_tools,
                values=True,
            )
            if self.variables:
                self._sb.send_variables(self.variables)
        return self._sb

    def send_tools(self, tools: dict[str, Any]) -> None:
        self.tools = dict(tools)
        self.cleanup()  # tools are fixed when a worker starts: the next call starts a fresh one

    def send_variables(self, variables: dict[str, Any]) -> None:
        self.variables.update(variables)
        if self._sb is not None:
            self._sb.send_variables(variables)

    def __call__(self, code_action: str) -> CodeOutput:
        res = self._sandbox().run(code_action)
        self.state["_print_outputs"] = res.stdout
        if res.is_final_answer:
            return CodeOutput(output=res.final_answer, logs=res.stdout, is_final_answer=True)
        if res.error is not None:
            raise InterpreterError(res.error)
        return CodeOutput(output=res.value, logs=res.stdout, is_final_answer=False)

    def cleanup(self) -> None:
        if self._sb is not None:
            self._sb.close()
            self._sb = None
