"""Answer grading with math-verify: boxed-answer extraction, equivalence, majority vote, and `deepmath grade`.

Grading always runs in the host process (never in the sandbox). It must be safe to call from worker threads:
math-verify's own timeouts use ``signal.alarm``, which only works in the main thread, so we always pass
``timeout=None`` to math-verify and bound the time ourselves:

* answers longer than ``MAX_ANSWER_CHARS`` are not parsed (exact string comparison only);
* strings that would make latex2sympy evaluate huge numbers at parse time (``\\binom``, ``\\gcd``, ``\\Gamma``,
  matrix constructors with large arguments) are not parsed;
* parsed expressions are screened for results too large to evaluate (``9^{9^9}``, ``(10^9)!``, ``(x+1)^{10^5}``)
  before ``verify`` sees them; such answers are compared as normalised strings only;
* in the main thread, when no other ``ITIMER_REAL`` timer is armed, a wall-clock timer (``TIMEOUT_S``) also
  interrupts a runaway parse/verify (it cannot interrupt a single long C-level operation, hence the screens);
* parses and verdicts are LRU-cached (golds repeat, and sampled answers repeat a lot).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import sys
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, TextIO

MAX_ANSWER_CHARS = 400
"""Longer answers are compared as strings only (bounds parse time off the main thread)."""
MAX_BARE_CHARS = 100
"""A text without a box counts as a bare answer only if it is one line of at most this many characters."""
TIMEOUT_S = 5.0
"""Wall-clock cap for one parse or one verify when running in the main thread."""
_MAX_DIGITS = 20_000.0  # screen: numbers with more decimal digits than this are not evaluated
_MAX_SYMBOLIC_POW = 200  # screen: (non-symbol base)^n with n above this is not expanded

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


# ----------------------------------------------------------------------------------------------- extraction


def _match_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx`` (escaped braces ``\\{``, ``\\}`` ignored)."""
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\boxed {``, ``\\fbox{``), nested braces included.

    Returns None when there is no box or when the last box's braces are unbalanced."""
    if not isinstance(text, str):
        return None
    last = None
    for last in _BOX_RE.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return None
    open_idx = last.end() - 1
    close = _match_brace(text, open_idx)
    if close is None:
        return None
    return text[open_idx + 1 : close].strip()


def extract_answer(text: str) -> str | None:
    """The final answer of a text: the last boxed content if the text has a box, else the stripped text itself
    when it is a short bare answer (one line, at most ``MAX_BARE_CHARS`` characters), else None.

    A text that contains a box marker whose braces do not balance gives None."""
    if not isinstance(text, str):
        return None
    if _BOX_RE.search(text):
        return extract_boxed(text)
    s = text.strip()
    if not s or len(s) > MAX_BARE_CHARS or "\n" in s:
        return None
    return s


# ----------------------------------------------------------------------------------------------- normalisation

_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\\,|\{,\}|\\ |\\;|\\!|~| )\d{3})+)(?![\d])")
_THOUSANDS_SEP_RE = re.compile(r"\\,|\{,\}|\\ |\\;|\\!|~| ")


def _normalize_answer(ans: str) -> str:
    """Light clean-up before math-verify: math delimiters, trailing period, unicode degrees and thousands
    separators written as ``\\,``, ``{,}``, ``\\ `` or a space (``1\\,000`` -> ``1000``). A plain comma is left
    to math-verify, which reads ``1,000`` as 1000 but ``(1,0)`` as a pair."""
    s = ans.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : -len(right)].strip()
            break
    s = s.rstrip()
    while s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    s = s.replace("°", "^\\circ").replace("−", "-")
    s = _THOUSANDS_RE.sub(lambda m: m.group(1) + _THOUSANDS_SEP_RE.sub("", m.group(2)), s)
    return s


_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|operatorname|mbox)\s*\{([^{}]*)\}")


def _string_key(ans: str) -> str:
    """Normalised string used when math-verify cannot decide: text commands unwrapped, ``\\left``/``\\right``,
    spacing commands and whitespace removed, ``\\dfrac``/``\\tfrac`` -> ``\\frac``, case folded."""
    s = _normalize_answer(ans)
    for _ in range(3):
        s2 = _TEXT_CMD_RE.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = re.sub(r"\\(?:left|right)\b", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\[,;:! ]", "", s)
    s = re.sub(r"\s+", "", s)
    return s.casefold()


# ----------------------------------------------------------------------------------------------- safety screens

_HAZARD_FUNC_RE = re.compile(r"binom|choose|gcd|lcm|zeros|ones|diag|eye|Gamma|gamma")
_HAZARD_ARG_RE = re.compile(r"\d{5,}|[\^!*]")


def _string_is_hazardous(s: str) -> bool:
    """True when latex2sympy would evaluate something potentially huge while parsing ``s``."""
    return bool(_HAZARD_FUNC_RE.search(s) and _HAZARD_ARG_RE.search(s))


def _int_log10(n: int) -> float:
    n = abs(n)
    if n == 0:
        return 0.0
    return math.log10(n) if n.bit_length() < 1000 else n.bit_length() * 0.30103


def _log10_bound(expr: Any) -> float:
    """A rough upper bound of log10|value| for a numeric sympy tree (``inf`` when astronomically large).
    Symbols and unknown nodes count as small; their arguments are still bounded."""
    import sympy

    if isinstance(expr, sympy.Rational):  # Integer included
        return max(_int_log10(int(expr.p)), _int_log10(int(expr.q)))
    if isinstance(expr, sympy.Float):
        try:
            v = abs(float(expr))
            return math.log10(v) if v > 1 else 0.0
        except (OverflowError, ValueError):
            return math.inf
    args = getattr(expr, "args", ())
    if not args or not isinstance(expr, sympy.Basic):
        return 0.0
    if isinstance(expr, sympy.Pow):
        b, e = (_log10_bound(a) for a in args)
        if e > 15:
            return math.inf
        return max(b, 0.0) * 10.0**e + e
    if isinstance(expr, sympy.Mul):
        return sum(_log10_bound(a) for a in args)
    if isinstance(expr, (sympy.factorial, sympy.factorial2, sympy.gamma, sympy.subfactorial)):
        n = _log10_bound(args[0])
        if n > 15:
            return math.inf
        v = 10.0**n
        return v * max(math.log10(v + 1.0), 1.0)
    if isinstance(expr, sympy.binomial):
        n = _log10_bound(args[0])
        return math.inf if n > 15 else 0.30103 * 10.0**n
    return max(_log10_bound(a) for a in args) + 1.0


def _expr_is_hazardous(expr: Any) -> bool:
    """True when comparing ``expr`` could build an astronomically large number or expand a huge power."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    try:
        if _log10_bound(expr) > _MAX_DIGITS:
            return True
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Pow) and not node.base.is_Atom and node.exp.is_Number:
                if abs(node.exp) > _MAX_SYMBOLIC_POW:
                    return True
    except Exception:
        return True
    return False


# ----------------------------------------------------------------------------------------------- timeouts


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise math-verify's TimeoutException after ``seconds`` of wall time, in the main thread only and only when
    no other real-time timer is armed (e.g. pytest-timeout's); elsewhere it does nothing (the screens bound time)."""
    from math_verify.errors import TimeoutException

    usable = (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return

    def _handler(signum: int, frame: Any) -> None:
        raise TimeoutException("grading timed out")

    old = signal.signal(signal.SIGALRM, _handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------------------------- parsing

_MV_LOADED = False


def _mv() -> Any:
    """Import math-verify once and silence its 'timeout disabled' warning (we handle time ourselves)."""
    global _MV_LOADED
    import math_verify
    import math_verify.grader
    import math_verify.parser

    if not _MV_LOADED:
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        _MV_LOADED = True
    return math_verify


@lru_cache(maxsize=1)
def _configs() -> tuple:
    mv = _mv()
    return (mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig())


@lru_cache(maxsize=65536)
def _parse(ans: str) -> tuple:
    """math-verify parse of one (normalised) answer string, as a tuple of candidates; () when unparseable or
    unsafe. Only sympy candidates are kept (string fallbacks are handled by ``_string_key``)."""
    if not ans or len(ans) > MAX_ANSWER_CHARS or _string_is_hazardous(ans):
        return ()
    mv = _mv()
    import sympy

    try:
        with _deadline(TIMEOUT_S):
            parsed = mv.parse("\\boxed{" + ans + "}", extraction_config=_configs(), parsing_timeout=None)
    except BaseException as exc:  # TimeoutException is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return ()
    out = tuple(p for p in parsed if isinstance(p, (sympy.Basic, sympy.MatrixBase)))
    if any(_expr_is_hazardous(p) for p in out):
        return ()
    return out


def _prepare(text: str | None, gold: bool = False) -> str | None:
    """Extract and normalise the answer of a prediction (a bare answer or a whole solution) or of a gold (its last
    box if it has one, else the whole stripped text, whatever its length)."""
    if text is None or not isinstance(text, str):
        return None
    if not gold:
        ans = extract_answer(text)
    else:
        ans = extract_boxed(text) if _BOX_RE.search(text) else text.strip()
    if ans is None:
        return None
    ans = _normalize_answer(ans)
    return ans or None


@lru_cache(maxsize=262144)
def _equivalent_answers(gold: str, pred: str) -> bool:
    if gold == pred:
        return True
    g, p = _parse(gold), _parse(pred)
    if g and p:
        mv = _mv()
        try:
            with _deadline(TIMEOUT_S):
                if mv.verify(list(g), list(p), timeout_seconds=None):
                    return True
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
    gk, pk = _string_key(gold), _string_key(pred)
    return bool(gk) and gk == pk


def is_equivalent(gold: str, pred: str | None) -> bool:
    """True when ``pred`` is mathematically equivalent to ``gold`` (math-verify, gold first).

    ``pred`` may be a bare answer or a whole solution (its last ``\\boxed{}`` is used); a solution without a box,
    an unbalanced box or an empty string is never equivalent. Falls back to a normalised string comparison when
    math-verify cannot decide. Never raises; cached; time-bounded (see the module docstring)."""
    try:
        g, p = _prepare(gold, gold=True), _prepare(pred)
        if g is None or p is None:
            return False
        return _equivalent_answers(g, p)
    except Exception:
        return False


def gold_is_parseable(gold: str) -> bool:
    """True when math-verify parses the gold answer (or its last box) to at least one sympy expression."""
    try:
        g = _prepare(gold, gold=True)
        return g is not None and len(_parse(g)) > 0
    except Exception:
        return False


def majority_vote(preds: list[str | None]) -> tuple[str | None, int]:
    """Majority over equivalence classes of the predictions.

    Each prediction joins the first class whose first member it is equivalent to (``is_equivalent(first, pred)``),
    else starts a new class. None predictions and texts without an extractable answer are ignored. Returns the
    first member of the largest class and the class size; a tie goes to the class whose first member appears
    earliest. All ignored -> ``(None, 0)``."""
    reps: list[str] = []
    counts: list[int] = []
    for p in preds:
        if p is None or _prepare(p) is None:
            continue
        for i, rep in enumerate(reps):
            if is_equivalent(rep, p):
                counts[i] += 1
                break
        else:
            reps.append(p)
            counts.append(1)
    if not reps:
        return None, 0
    best = max(range(len(reps)), key=lambda i: (counts[i], -i))
    return reps[best], counts[best]


# ----------------------------------------------------------------------------------------------- CLI


def grade_stream(inp: TextIO, out: TextIO) -> int:
    """`deepmath grade`: read JSONL rows ``{"gold": str, "pred": str}`` from ``inp``, write each row back with
    ``"equal": bool``. A bad line (not JSON, not an object, a missing key, a non-string value) gives a row with
    ``"equal": false`` and ``"error"``, plus a message on stderr; processing continues. Blank lines are skipped.
    Returns 1 if any line was bad, else 0."""
    bad = 0
    for lineno, line in enumerate(inp, start=1):
        if not line.strip():
            continue
        row: dict[str, Any]
        error: str | None = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            obj, error = None, f"line {lineno}: not valid JSON ({exc.msg})"
        if error is None and not isinstance(obj, dict):
            error = f"line {lineno}: expected a JSON object, got {type(obj).__name__}"
        row = dict(obj) if isinstance(obj, dict) else {}
        if error is None:
            missing = [k for k in ("gold", "pred") if k not in row]
            if missing:
                error = f"line {lineno}: missing key(s) {', '.join(missing)}"
            else:
                wrong = [k for k in ("gold", "pred") if not isinstance(row[k], str)]
                if wrong:
                    error = "; ".join(
                        f"line {lineno}: {k!r} must be a string, got {type(row[k]).__name__}" for k in wrong
                    )
        if error is None:
            row["equal"] = is_equivalent(row["gold"], row["pred"])
        else:
            bad += 1
            row["equal"] = False
            row["error"] = error
            print(f"deepmath grade: {error}", file=sys.stderr)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()
    return 1 if bad else 0
