"""Our Sandbox as smolagents' executor (`SmolagentsExecutor`): the `PythonExecutor` interface, the value of the last
expression as a Python value (tagged JSON from the worker, never pickle or eval on the host), state between calls,
print output in the logs, the behaviours smolagents' own executor tests check, and a `CodeAgent` run."""

from __future__ import annotations

import ast
import builtins
import json
import math
import pickle

import pytest

from deepmath_lib.sandbox import Sandbox, SmolagentsExecutor, TextForm, start_zygote, values

smolagents = pytest.importorskip("smolagents")
from smolagents.local_python_executor import CodeOutput, InterpreterError, PythonExecutor  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def zygote() -> None:
    start_zygote()


@pytest.fixture
def ex():
    e = SmolagentsExecutor(timeout=5)
    yield e
    e.cleanup()


def same(a, b) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True would hide a wrong type)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same(k, k2) and same(a[k], b[k2]) for k, k2 in zip(a, b, strict=True)
        )
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


# --------------------------------------------------------------------------- each type comes back as itself
BIG = 2**100_000 + 1  # 30,103 digits: beyond Python's default int/str conversion limit of 4,300
VALUES = [
    ("0", 0),
    ("-17", -17),
    ("2**100_000 + 1", BIG),
    ("-(3**5000)", -(3**5000)),
    ("1.5", 1.5),
    ("-0.0", -0.0),
    ("1e308 * 10", math.inf),
    ("float('nan')", math.nan),
    ("0.1 + 0.2", 0.1 + 0.2),
    ("complex(1, -2.5)", complex(1, -2.5)),
    ("'text'", "text"),
    ("'ünïcode ✓ \\n and \"quotes\"'", 'ünïcode ✓ \n and "quotes"'),
    ("''", ""),
    ("True", True),
    ("False", False),
    ("None", None),
    ("[1, 'a', None, 2.5]", [1, "a", None, 2.5]),
    ("[]", []),
    ("(1, (2, 3), [4])", (1, (2, 3), [4])),
    ("()", ()),
    ("{'a': 1, 'b': [True]}", {"a": 1, "b": [True]}),
    ("{1: 'one', (2, 3): 'pair', None: 0, 2.5: {}}", {1: "one", (2, 3): "pair", None: 0, 2.5: {}}),
    ("{'t': 'int', 'v': '0x5'}", {"t": "int", "v": "0x5"}),  # looks like a tag: still a dict of two strings
    ("{3, 1, 2}", {1, 2, 3}),
    ("set()", set()),
    ("frozenset({(1, 2), 'x'})", frozenset({(1, 2), "x"})),
    ("{'deep': [[[[{'k': (1,)}]]]]}", {"deep": [[[[{"k": (1,)}]]]]}),
]


@pytest.mark.parametrize(("code", "expected"), VALUES, ids=[c[:30] for c, _ in VALUES])
def test_value_comes_back_as_a_python_value(ex, code, expected) -> None:
    out = ex(code)
    assert isinstance(out, CodeOutput) and not out.is_final_answer and out.logs == ""
    assert same(out.output, expected), (code, out.output)


def test_numpy_sympy_and_other_values_come_back_as_text(ex) -> None:
    out = ex("import numpy as np\nnp.arange(3)")
    assert type(out.output) is TextForm and out.output == "array([0, 1, 2])"
    assert out.output.type_name == "numpy.ndarray"
    assert ex("np.int64(7)").output == repr(__import__("numpy").int64(7))
    out = ex("import sympy as sp\nsp.sqrt(8)")
    assert (
        type(out.output) is TextForm
        and out.output == "2*sqrt(2)"
        and out.output.type_name.startswith("sympy.")
    )
    assert ex("sp.Rational(1, 3) + 1").output == "4/3"
    # text inside a container, the rest as values
    assert ex("[sp.Integer(2), 3]").output == [TextForm("2"), 3]
    out = ex("class P:\n    def __repr__(self):\n        return 'P()'\nP()")
    assert type(out.output) is TextForm and out.output == "P()" and out.output.type_name == "__main__.P"
    # a subclass of a builtin type could override anything: it travels as text, not as the type it claims
    out = ex("class I(int):\n    def __repr__(self):\n        return 'I!'\nI(5)")
    assert type(out.output) is TextForm and out.output == "I!"
    assert ex("len").output == "<built-in function len>"
    assert repr(TextForm("2*sqrt(2)")) == "2*sqrt(2)"  # shown as a REPL shows it, without quotes


def test_values_too_large_or_deep_come_back_as_cut_text(ex) -> None:
    out = ex("a = []\na.append(a)\na")  # a cycle
    assert type(out.output) is TextForm and out.output == "[[...]]"
    out = ex("x = 1\nfor _ in range(200):\n    x = [x]\nx")  # deeper than values.MAX_DEPTH
    assert type(out.output) is TextForm and out.output.startswith("[[[[")
    out = ex("list(range(10**6))")  # more than values.MAX_ITEMS
    assert type(out.output) is TextForm and "characters omitted" in out.output
    assert len(out.output) < values.MAX_CHARS and out.output.startswith("[0, 1, 2")
    out = ex("'x' * 3_000_000")  # a string too long for one reply
    assert type(out.output) is TextForm and "characters omitted" in out.output


def test_a_repr_that_raises_is_the_snippets_error(ex) -> None:
    with pytest.raises(InterpreterError, match="ValueError: no repr"):
        ex("class B:\n    def __repr__(self):\n        raise ValueError('no repr')\nB()")
    assert ex("1 + 1").output == 2  # the executor goes on


# --------------------------------------------------------------------------- the interface around the value
def test_state_persists_and_print_goes_to_the_logs(ex) -> None:
    assert isinstance(ex, PythonExecutor)
    out = ex("x = 40\nprint('set x')")
    assert out.output is None and out.logs == "set x\n"  # a statement has no value
    assert ex.state["_print_outputs"] == "set x\n"
    out = ex("def f(n):\n    return n + x\nprint('calling f')\nf(2)")
    assert out.output == 42 and out.logs == "calling f\n"  # the value is not repeated in the logs
    assert ex("f(x)").output == 80
    ex.send_variables({"base": 10**30})
    assert ex("base + x").output == 10**30 + 40


def test_errors_raise_with_the_prints_before_them(ex) -> None:
    with pytest.raises(InterpreterError, match="ZeroDivisionError"):
        ex("print('before')\n1/0")
    assert ex.state["_print_outputs"] == "before\n"
    with pytest.raises(InterpreterError, match="not allowed"):
        ex("import os")


def test_final_answer_values(ex) -> None:
    out = ex("final_answer((2**70, {'k': [1.5]}))")
    assert out.is_final_answer and same(out.output, (2**70, {"k": [1.5]}))
    out = ex("import sympy as sp\nfinal_answer(sp.Rational(2, 3))")
    assert out.is_final_answer and out.output == "2/3" and type(out.output) is TextForm


def test_a_plain_sandbox_still_prints_the_value() -> None:
    with Sandbox() as sb:  # the DeepMath format: the value's repr joins the output, no value is sent
        r = sb.run("print('a')\n6 * 7")
        assert r.stdout == "a\n42\n" and r.value is None
    with Sandbox(values=True) as sb:
        r = sb.run("print('a')\n6 * 7")
        assert r.stdout == "a\n" and r.value == 42


# --------------------------------------------------------------------------- what smolagents' executor tests check
# Each case is written as a snippet with a bare last expression (the value a REPL, Jupyter and smolagents' remote
# executors return; LocalPythonExecutor also returns the value of a last assignment).
CASES = [
    ("binop on sent variables", "y + x", 9),
    ("lambda", "f = lambda x: x + 2\nf(3)", 5),
    (
        "lambda called from a dict",
        "ops = {'sq': lambda v: v * v, 'neg': lambda v: -v}\nops['sq'](7) + ops['neg'](1)",
        48,
    ),
    (
        "functions called from a list",
        "def foo(a, b): return a * b\ndef boo(a): return a ** 3\nfun = [foo, boo]\n(fun[0](4, 2), fun[1](4))",
        (8, 64),
    ),
    ("chained assignment", "a = b = c = 5\nb += 1\n(a, b, c)", (5, 6, 5)),
    ("tuple assignment and swap", "d, i = [1, 2, 3], 1\nd[i], d[i + 1] = d[i + 1], d[i]\nd", [1, 3, 2]),
    (
        "isinstance on builtins",
        "(isinstance(3, int), isinstance('s', str), isinstance([], (list, tuple)), isinstance(2.0, int))",
        (True, True, True, False),
    ),
    ("types as objects", "t = [float(2), str, int]\n(t[0], t[1] is str, t[2]('7'))", (2.0, True, 7)),
    ("recursive function", "def fib(n):\n    return n if n <= 1 else fib(n - 1) + fib(n - 2)\nfib(6)", 8),
    ("string methods", "'hello'.replace('h', 'o').split('e')", ["o", "llo"]),
    ("slicing", "'hello'[1:3][::-1]", "le"),
    (
        "list comprehension and join",
        "s = 'THESEAGULL43'\n'-'.join([c.lower() for c in s if c.isalpha()])",
        "t-h-e-s-e-a-g-u-l-l",
    ),
    ("set comprehension", "{e['time'] for e in [{'time': 10}, {'time': 19}, {'time': 20}]}", {10, 19, 20}),
    (
        "dict comprehension",
        "{num: name for num, name in {101: 'a', 102: 'b'}.items() if name not in ['a']}",
        {102: "b"},
    ),
    ("generator", "a = [1, 2, 3, 4, 5]\nb = (i ** 2 for i in a)\nlist(b)", [1, 4, 9, 16, 25]),
    ("break and continue", "for i in range(10):\n    if i == 5:\n        break\ni", 5),
    ("while", "i = 0\nwhile i < 3:\n    i += 1\ni", 3),
    ("boolean operators", "a, b, c = None, 'Found', ''\n(a or c) or b", "Found"),
    ("chained comparisons", "(0 <= -1 < 4, 0 <= 3 < 4)", (False, True)),
    (
        "imports",
        "import math, statistics, itertools\n(math.sqrt(4), statistics.mean([1, 2, 3, 4, 4]), list(itertools.islice(range(10), 3)))",
        (2.0, 2.8, [0, 1, 2]),
    ),
    (
        "classes and inheritance",
        "class A:\n    def __init__(self, n): self.n = n\n    def s(self): return 'A' + str(self.n)\nclass B(A):\n    def s(self): return 'B' + super().s()\nB(3).s()",
        "BA3",
    ),
    (
        "exceptions caught",
        "try:\n    raise ValueError('An error occurred')\nexcept ValueError as e:\n    msg = str(e)\nmsg",
        "An error occurred",
    ),
    (
        "variable and default arguments",
        "def f(*args, k=1, **kw): return sum(args) * k + sum(kw.values())\nf(1, 2, 3, k=2, x=4, y=5)",
        21,
    ),
    (
        "augmented assignment on items and attributes",
        "d = {'a': 0}\nd['a'] += 1\nclass C: pass\nc = C()\nc.n = 1\nc.n += 1\n(d, c.n)",
        ({"a": 1}, 2),
    ),
    ("print beside the value", "print('Hello world!')\nprint('Ok')\n'done'", "done"),
    ("a statement has no value", "import time\ntime.sleep(0.01)", None),
]


@pytest.mark.parametrize(("name", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_smolagents_executor_behaviours(ex, name, code, expected) -> None:
    ex.send_variables({"x": 3, "y": 6})
    out = ex(code)
    assert same(out.output, expected), (name, out.output)
    if name == "print beside the value":
        assert out.logs == "Hello world!\nOk\n"


def test_state_between_calls_like_smolagents(ex) -> None:
    """smolagents' executor tests also check that what one call defines, the next one sees."""
    ex("import math\nclass Acc:\n    def __init__(self): self.items = []\nacc = Acc()")
    ex("acc.items.append(math.factorial(5))")
    ex("acc.items.append(len(acc.items))")
    assert ex("acc.items").output == [120, 1]


# --------------------------------------------------------------------------- the host trusts nothing it receives
def test_the_host_never_unpickles_or_evaluates_what_the_worker_sends(ex, monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the host must not unpickle or evaluate worker data")

    ex("z = 1")  # the worker starts (send_variables pickles host -> worker only)
    for mod, name in (
        (pickle, "loads"),
        (pickle, "load"),
        (builtins, "eval"),
        (builtins, "exec"),
        (ast, "literal_eval"),
    ):
        monkeypatch.setattr(mod, name, refuse)
    out = ex("({'a': (1, 2.5, None)}, {3}, 2**80, 'x')")
    assert same(out.output, ({"a": (1, 2.5, None)}, {3}, 2**80, "x"))
    assert ex("import sympy as sp\nsp.sqrt(2)").output == "sqrt(2)"
    assert ex("final_answer([True])").output == [True]


@pytest.mark.parametrize(
    "bad",
    [
        1,  # a raw JSON number: every number is tagged
        [1, 2],  # an untagged list
        {"t": "pickle", "v": "gASVBQAAAAAAAAB9lC4="},
        {"t": "int", "v": "0x1", "extra": 1},
        {"t": "int", "v": "12zz"},
        {"t": "int", "v": 5},
        {"t": "set", "v": [{"t": "list", "v": []}]},  # unhashable member
        {"t": "dict", "v": [[{"t": "dict", "v": []}, 1]]},  # unhashable key
        {"t": "dict", "v": [[1]]},
        {"t": "complex", "v": ["1"]},
    ],
)
def test_decode_rejects_malformed_values(bad) -> None:
    with pytest.raises(ValueError):
        values.decode(bad)


def test_decode_bounds_depth_and_keeps_text_as_text() -> None:
    bomb = None
    for _ in range(10_000):
        bomb = {"t": "list", "v": [bomb]}
    with pytest.raises(ValueError):
        values.decode(bomb)
    code = "__import__('os').system('echo pwned')"
    out = values.decode({"t": "text", "v": code, "type": "x"})
    assert type(out) is TextForm and out == code


_FORGE = """
_s = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'BuiltinImporter'][0].load_module('sys')
_os, _json = _s.modules['os'], _s.modules['json']
fd = None
for f in range(3, 256):  # the worker's channel is its only descriptor above stderr
    try:
        _os.fstat(f)
        fd = f
        break
    except OSError:
        pass
body = _json.dumps({{"stdout": "", "error": None, "duration_s": 0.0, "value": _json.loads({value!r})}}).encode()
_os.write(fd, len(body).to_bytes(4, 'big') + body)
_os._exit(0)
"""


def test_a_forged_reply_from_the_worker_is_decoded_strictly() -> None:
    """A snippet that escapes to `os` can write its own reply on the worker's channel: the host decodes it as
    tagged JSON like any other (a text stays text), and a malformed value gets the worker killed, not trusted."""
    with Sandbox(values=True) as sb:
        code = "__import__('os').system('echo pwned')"
        r = sb.run(_FORGE.format(value=json.dumps({"t": "text", "v": code, "type": "x"})))
        assert r.error is None and type(r.value) is TextForm and r.value == code
    with Sandbox(values=True) as sb:
        sb.run("keep = 7")
        r = sb.run(_FORGE.format(value='{"t": "set", "v": [{"t": "list", "v": []}]}'))
        assert r.error is not None and "malformed" in r.error and r.value is None
        assert sb.run("keep").value == 7  # a fresh worker, state restored


# --------------------------------------------------------------------------- a CodeAgent sees the value
def test_codeagent_observation_shows_the_value() -> None:
    """A scripted model (no network) computes in one step and answers in the next; the observation of the first
    step, which the model reads before the second, shows the value of its last expression."""
    from smolagents import CodeAgent
    from smolagents.models import ChatMessage, MessageRole, Model

    steps = [
        "Thought: compute first.\n<code>\nn = 2**64\nprint('computing')\nn + 1\n</code>",
        "Thought: answer.\n<code>\nfinal_answer(n + 1)\n</code>",
    ]
    seen: list[str] = []

    class Scripted(Model):
        def generate(self, messages, **kwargs):
            seen.append(
                "\n".join(
                    str(part.get("text", ""))
                    for m in messages
                    for part in (m.content if isinstance(m.content, list) else [{"text": m.content}])
                )
            )
            return ChatMessage(role=MessageRole.ASSISTANT, content=steps[len(seen) - 1])

    ex = SmolagentsExecutor(timeout=5)
    agent = CodeAgent(tools=[], model=Scripted(), executor=ex, max_steps=3, verbosity_level=0)
    try:
        result = agent.run("What is 2**64 + 1?")
    finally:
        ex.cleanup()
    assert result == 2**64 + 1
    first = agent.memory.steps[1]
    assert "Execution logs:\ncomputing\n" in first.observations
    assert "Last output from code snippet:\n18446744073709551617" in first.observations
    assert first.action_output == 2**64 + 1
    assert "Last output from code snippet:\n18446744073709551617" in seen[1]  # the model read it
