"""A snippet's value between the worker and the host, as tagged JSON: never pickle, never `eval`.

The worker encodes (`encode`); the host decodes (`decode`) and trusts nothing it receives. Every JSON object on the
wire is a tag ``{"t": TAG, "v": PAYLOAD}``; plain JSON strings, booleans and null stand for themselves, so a user's
dict whose keys look like tags cannot be mistaken for one. Tags:

- ``int``: hexadecimal text (no limit on digits: Python's int/str digit cap exempts base 16);
- ``float``: ``repr`` text (``nan``, ``inf`` included); ``complex``: ``[real, imag]`` as float texts;
- ``list``, ``tuple``, ``set``, ``frozenset``: the encoded items; ``dict``: ``[[key, value], ...]`` (any keys);
- ``text``: the value's text form (``repr``), with its type name in ``"type"``: numpy and sympy values, instances
  of subclasses of the types above, and anything else. It comes back as `TextForm`, a ``str``.

Only the exact builtin types travel as values (a subclass could override anything); a value nested deeper than
`MAX_DEPTH`, larger than `MAX_ITEMS` items or `MAX_CHARS` characters comes back as its text form, cut.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100
MAX_ITEMS = 100_000
MAX_CHARS = 1_000_000  # the encoded value; the host's frame limit (4 MiB) leaves room for stdout beside it
_TAGS = ("int", "float", "complex", "list", "tuple", "set", "frozenset", "dict", "text")


class TextForm(str):
    """A value that came back as its text form (``repr`` in the worker); `type_name` says what it was. Shown
    without quotes, as a REPL shows the value."""

    type_name: str = ""

    def __new__(cls, text: str, type_name: str = "") -> TextForm:
        obj = super().__new__(cls, text)
        obj.type_name = type_name
        return obj

    def __repr__(self) -> str:
        return str(self)


class _TooBig(Exception):
    pass


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n...[{len(text) - head - tail} characters omitted]...\n{text[-tail:]}"


def _type_name(value: Any) -> str:
    t = type(value)
    mod = getattr(t, "__module__", "") or ""
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def text_form(value: Any, limit: int = MAX_CHARS // 2) -> dict:
    """The ``text`` tag of a value: its repr (cut to `limit` characters) and its type name."""
    return {"t": "text", "v": _cut(repr(value), limit), "type": _type_name(value)[:200]}


def encode(value: Any) -> Any:
    """Tagged JSON (a JSON-ready object) for a value, in the worker. Raises only what the value's own `repr` raises
    when the value has to travel as text."""
    budget = [MAX_ITEMS]

    def enc(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise _TooBig
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return {"t": "int", "v": hex(v)}
        if t is float:
            return {"t": "float", "v": repr(v)}
        if t is complex:
            return {"t": "complex", "v": [repr(v.real), repr(v.imag)]}
        if t in (list, tuple, set, frozenset):
            return {"t": t.__name__, "v": [enc(x, depth + 1) for x in v]}
        if t is dict:
            return {"t": "dict", "v": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
        return text_form(v)

    try:
        out = enc(value, 0)
        if len(json.dumps(out)) <= MAX_CHARS:
            return out
    except (_TooBig, RecursionError):
        pass
    return text_form(value)


def decode(obj: Any) -> Any:
    """The Python value of tagged JSON from a worker, on the host. Builds only None, bool, str, int, float, complex,
    list, tuple, set, frozenset, dict and `TextForm`; anything malformed raises ValueError."""

    def dec(o: Any, depth: int) -> Any:
        if depth > MAX_DEPTH + 1:
            raise ValueError("value nested too deeply")
        if o is None or type(o) in (bool, str):
            return o
        if type(o) is not dict or set(o) - {"t", "v", "type"} or o.get("t") not in _TAGS:
            raise ValueError("malformed value")
        tag, v = o["t"], o.get("v")
        if tag == "int" and type(v) is str:
            return int(v, 16)
        if tag == "float" and type(v) is str:
            return float(v)
        if tag == "complex" and type(v) is list and len(v) == 2 and all(type(x) is str for x in v):
            return complex(float(v[0]), float(v[1]))
        if tag == "text" and type(v) is str:
            name = o.get("type", "")
            return TextForm(v, name if type(name) is str else "")
        if tag == "dict" and type(v) is list:
            if not all(type(kv) is list and len(kv) == 2 for kv in v):
                raise ValueError("malformed dict")
            return {dec(k, depth + 1): dec(x, depth + 1) for k, x in v}
        if type(v) is list and tag in ("list", "tuple", "set", "frozenset"):
            items = [dec(x, depth + 1) for x in v]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        raise ValueError(f"malformed {tag} value")

    try:
        return dec(obj, 0)
    except (TypeError, RecursionError, OverflowError) as e:  # e.g. a list sent as a set member (unhashable)
        raise ValueError(f"malformed value: {type(e).__name__}") from None
