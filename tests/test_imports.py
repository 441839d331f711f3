"""The package's own import graph: no cycles, own imports at the top of files, light commands stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / "deepmath_lib"
MAX_FUNCTION_LEVEL = 5  # own-module imports inside functions, each with a comment saying why


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG_DIR.rglob("*.py"):
        parts = list(path.relative_to(PKG_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's own modules an import statement loads (relative imports resolved). ``from pkg import sub``
    names the submodule; ``from pkg import name`` names the package."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    subs = {f"{prefix}.{a.name}" for a in node.names}
    found = {s for s in subs if s in MODULES}
    if len(found) < len(subs) and prefix in MODULES:
        found.add(prefix)
    return found - {module}


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Edges between own modules (imports at any depth), and the function-level ones as (path, line, source)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    inner = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _targets(module, path, node)
                edges[module] |= targets
                if targets and id(node) in in_function:
                    inner.append(
                        (
                            str(path.relative_to(PKG_DIR.parent)),
                            node.lineno,
                            text.splitlines()[node.lineno - 1],
                        )
                    )
    return edges, inner


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_a_cycle(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_own_modules():
    edges, _ = _graph()
    assert len(edges) > 30 and edges["deepmath_lib.agent"]  # the reader found the package and its imports
    assert _cycles(edges) == []


def test_own_imports_sit_at_the_top():
    _, inner = _graph()
    assert len(inner) <= MAX_FUNCTION_LEVEL, inner
    for path, line, source in inner:
        assert "#" in source, (
            f"{path}:{line}: a function-level import needs a comment saying why: {source.strip()}"
        )


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["exec", "--help"], ["grade", "--help"]],
    ids=["help", "exec", "grade"],
)
def test_light_commands_import_neither_torch_nor_pandas(argv):
    code = (
        "import sys; from deepmath_lib.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


def test_exec_and_grade_run_without_torch_or_pandas():
    """The commands themselves, not only their help: a snippet runs, a row is graded."""
    code = (
        "import io, sys\nfrom deepmath_lib.cli import main\n"
        "sys.stdin = io.StringIO('print(6*7)\\n'); rc1 = main(['exec'])\n"
        'sys.stdin = io.StringIO(\'{"gold": "42", "pred": "42"}\\n\'); rc2 = main([\'grade\'])\n'
        "print(rc1, rc2, sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 0 []", out.stdout[-500:]
