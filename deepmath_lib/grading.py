"""Answer grading with math-verify: answer extraction, equivalence, majority vote.

One extraction rule serves `deepmath grade`, the evaluation and the GRPO accuracy reward (:func:`extract_answer`):
the boxes a text ends with, all of them together when there are several; without a box, math-verify's own LaTeX
and expression extraction of the final answer. Golds are read the same way (a reference solution gives its boxes).
The agent passes only the model's prose, so executor output never supplies an answer.

Grading always runs in the host process (never in the sandbox). It must be safe to call from worker threads:
math-verify's own timeouts use ``signal.alarm``, which only works in the main thread, so we always pass
``timeout=None`` to math-verify and bound the time ourselves:

* answers longer than ``MAX_ANSWER_CHARS`` are not parsed (exact string comparison only), and only the last
  ``MAX_TEXT_TAIL`` characters of a text without a box are searched;
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
import math
import re
import signal
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

MAX_ANSWER_CHARS = 400
"""Longer answers are compared as strings only (bounds parse time off the main thread)."""
MAX_WORD_CHARS = 32
"""A bare answer in words that math-verify cannot read (``yes``, ``Monday``) is kept only up to this length."""
TIMEOUT_S = 5.0
"""Wall-clock cap for one parse or one verify when running in the main thread."""
_MAX_DIGITS = 20_000.0  # screen: numbers with more decimal digits than this are not evaluated
_MAX_SYMBOLIC_POW = 200  # screen: (non-symbol base)^n with n above this is not expanded

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


# ----------------------------------------------------------------------------------------------- extraction

MAX_TEXT_TAIL = 3000
"""Only the last this many characters of a text without a box are searched for its final answer."""
_MAX_GROUP = 12  # at most this many trailing boxes are read together
_MAX_SEP_CHARS = 80  # boxes further apart than this are separate statements

# What may stand between two boxes for them to count as one answer: punctuation, math delimiters, spacing,
# "and"/"or" (bare or in \text{}), and a short "x =" in front of a box.
_BOX_SEP_RE = re.compile(
    r"(?:\s|[,;:.&$]|\\[()\[\]]|\\\\|\\[,;: !]|\\q?quad\b|\\(?:text|mbox|textrm)\s*\{[\s,]*(?:and|or)?[\s,]*\}"
    r"|\b(?:and|or)\b|[A-Za-z](?:_\{?\w+\}?)?\s*=)*",
    re.IGNORECASE,
)
_MATH_DELIM_RE = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # an escaped \$ is a dollar sign
_WORDISH_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}"
)
_CMD_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
# A bare "1000,99" is ambiguous: math-verify reads plain text as 1000.99 (a decimal comma) and LaTeX as a list;
# "1,000" is a thousand either way.
_COMMA_DECIMAL_RE = re.compile(r"[-+]?\d+,\d+")
_THOUSANDS_COMMA_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+")


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


def _boxes(text: str) -> list[tuple[int, int, str]] | None:
    """The outermost boxes of a text as ``(start, end, content)``; None when the last box marker's braces do not
    balance (an answer cut off mid-box). An earlier marker that never closes is skipped."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    markers = list(_BOX_RE.finditer(text))
    for k, m in enumerate(markers):
        if m.start() < pos:  # a box inside a box
            continue
        close = _match_brace(text, m.end() - 1)
        if close is None:
            if k == len(markers) - 1:
                return None
            continue
        out.append((m.start(), close + 1, text[m.end() : close].strip()))
        pos = close + 1
    return out


def box_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each outermost ``\\boxed{...}`` (or ``\\fbox{``) in a text, nested braces included, for
    highlighting; a marker whose braces never close is left out."""
    spans: list[tuple[int, int]] = []
    for m in _BOX_RE.finditer(text):
        if spans and m.start() < spans[-1][1]:  # a box inside a box
            continue
        close = _match_brace(text, m.end() - 1)
        if close is not None:
            spans.append((m.start(), close + 1))
    return spans


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\boxed {``, ``\\fbox{``), nested braces included.

    Returns None when there is no box or when the last box's braces are unbalanced. This is the last box only;
    answers are read with :func:`extract_answer`."""
    if not isinstance(text, str):
        return None
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def final_boxes(text: str) -> list[str] | None:
    """Contents of the boxes a text ends with: the last box, and the boxes before it as long as only punctuation,
    spacing, math delimiters, "and"/"or" or a short ``x =`` separate them (``\\boxed{1}, \\boxed{2}``,
    ``\\boxed{k = 45} \\text{ and } \\boxed{n = 2}``). A box followed by words (``\\boxed{4}, no wait: \\boxed{5}``)
    is not part of the final answer. Repeats are dropped. None when there is no box or the last one is broken."""
    if not isinstance(text, str):
        return None
    boxes = _boxes(text)
    if not boxes:
        return None
    i = len(boxes) - 1
    while i > 0 and len(boxes) - i < _MAX_GROUP:
        sep = text[boxes[i - 1][1] : boxes[i][0]]
        if len(sep) > _MAX_SEP_CHARS or not _BOX_SEP_RE.fullmatch(sep):
            break
        i -= 1
    contents: list[str] = []
    for _, _, c in boxes[i:]:
        if c and c not in contents:
            contents.append(c)
    return contents or None


def _is_prose(s: str) -> bool:
    """True when a text reads as sentences rather than as one math answer (two or more words outside LaTeX
    commands and ``\\text{}``)."""
    t = _CMD_RE.sub(" ", _WORDISH_CMD_RE.sub(" ", s))
    return len(_WORD_RE.findall(t)) >= 2


def _is_bare(s: str, gold: bool) -> bool:
    """True when a whole text is one answer written without a box: no math delimiters, not prose, short, and on
    one line (a LaTeX environment such as a matrix may span lines). A gold has no length limit."""
    if _MATH_DELIM_RE.search(s) or _is_prose(s):
        return False
    if gold:
        return True
    return len(s) <= MAX_ANSWER_CHARS and ("\n" not in s or "\\begin" in s)


def _box_content(c: str) -> str:
    """A box's content as a bare answer that reads back the same: a boxed ``2,3`` is a list (math-verify reads a
    comma inside LaTeX as a separator), so it is written ``2, 3``, which is not also read as the number 2.3."""
    if _COMMA_DECIMAL_RE.fullmatch(c) and not _THOUSANDS_COMMA_RE.fullmatch(c):
        return c.replace(",", ", ")
    return c


def _text_answer(text: str) -> str | None:
    """math-verify's LaTeX and expression extraction of the final answer of a text without a box, as the LaTeX or
    number string it matched (None when nothing parses). Same regexes and order as ``math_verify.parse``: the
    highest-priority pattern wins ("final answer is", then "answer:", then the last formula or number), the
    rightmost match first; candidates too long or unsafe to parse are skipped."""
    import sympy

    _mv()
    from math_verify.parser import extract_match, get_extraction_regexes

    tail = text[-MAX_TEXT_TAIL:]
    if len(text) > MAX_TEXT_TAIL:  # start at a line boundary so that no formula is cut in half
        nl = tail.find("\n")
        tail = tail[nl + 1 :] if nl >= 0 else tail
    patterns = sorted(
        (
            (priority, pattern, target)
            for regexes, target in get_extraction_regexes(_text_configs())
            for pattern, priority in regexes
        ),
        key=lambda x: x[0],
    )
    priorities = sorted({p for p, _, _ in patterns})
    try:
        with _deadline(TIMEOUT_S):
            for prio in priorities:
                found = [(m, t) for p, pat, t in patterns if p == prio for m in pat.finditer(tail)]
                found.sort(key=lambda mt: (mt[0].end(), -mt[0].start()), reverse=True)
                for m, target in found:
                    groups = {k: v for k, v in m.groupdict().items() if v}
                    pieces = [v for k, v in groups.items() if "latex" in k or k == "expr"]
                    if any(len(v) > MAX_ANSWER_CHARS or _string_is_hazardous(v) for v in pieces):
                        continue
                    expr, s = extract_match(m, target)
                    if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)) or not s:
                        continue
                    if _expr_is_hazardous(expr):
                        continue
                    if sum(1 for k in groups if k.startswith("next") and "latex" in k):
                        s = s.replace(" and ", ", ")  # several formulas ("$1$, $2$ and $3$"): one list
                    if any(k.endswith("percent") for k in groups) and not s.endswith("%"):
                        s += "\\%"
                    return s.strip()
    except BaseException as exc:  # TimeoutException is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
    return None


def _answer(text: str, gold: bool) -> str | None:
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not s:
        return None
    if _BOX_RE.search(s):
        contents = final_boxes(s)
        if contents is None:
            return None
        return ", ".join(_box_content(c) for c in contents)
    if _is_bare(s, gold):
        if gold:
            return s
        if _WORD_RE.search(_CMD_RE.sub(" ", _WORDISH_CMD_RE.sub(" ", s))) or not _parse(_normalize_answer(s)):
            # "28 percent", "5 cm": words LaTeX would read as variables; "yes", "Monday": words math-verify skips
            return _text_answer(s) or (s if len(s) <= MAX_WORD_CHARS else None)
        return s
    found = _text_answer(s)
    return s if found is None and gold else found


def extract_answer(text: str) -> str | None:
    """The final answer of a model's text, as a bare LaTeX answer that :func:`is_equivalent` reads back the same.

    * A text with boxes: the content of the boxes it ends with (:func:`final_boxes`), several joined as a list
      (``\\boxed{1}, \\boxed{2}`` -> ``1, 2``); None when the last box is broken.
    * A text that is itself a bare answer (``12``, ``\\frac{1}{2}``, ``x = 5``, ``1000,99``): that text. (The
      comparison reads ``1000,99`` both as math-verify reads plain text, 1000.99, and as it reads LaTeX, a list.)
    * Any other text: math-verify's LaTeX and expression extraction of its final answer ("The final answer is
      $28\\%$" -> ``28\\%``, "Therefore $x \\geq 5$ is the solution." -> ``x \\geq 5``); None when nothing parses.

    For agent trajectories, pass only the model's own prose (code and executor output removed), as the agent
    does: executor output must never supply the answer."""
    return _answer(text, gold=False)


def extract_gold(text: str) -> str | None:
    """The answer of a gold: like :func:`extract_answer` (a whole reference solution gives its final boxes),
    except that a bare gold is taken whole, at any length, and read as LaTeX (``2,3`` is a list, not 2.3)."""
    return _answer(text, gold=True)


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
    """How a bare answer is parsed (wrapped in a box)."""
    mv = _mv()
    return (mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig())


@lru_cache(maxsize=1)
def _text_configs() -> tuple:
    """How the final answer of a text without a box is found: math-verify's defaults."""
    mv = _mv()
    return (mv.LatexExtractionConfig(), mv.ExprExtractionConfig())


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
    """Extract (:func:`extract_answer`, or :func:`extract_gold` for a gold) and normalise an answer."""
    if text is None or not isinstance(text, str):
        return None
    ans = extract_gold(text) if gold else extract_answer(text)
    if ans is None:
        return None
    ans = _normalize_answer(ans)
    return ans or None


def _readings(ans: str) -> tuple[str, ...]:
    """The ways to read a bare answer: ``1000,99`` both as math-verify reads plain text (1000.99, a decimal comma)
    and as it reads LaTeX (a list); anything else one way."""
    if _COMMA_DECIMAL_RE.fullmatch(ans) and not _THOUSANDS_COMMA_RE.fullmatch(ans):
        return (ans.replace(",", "."), ans)
    return (ans,)


@lru_cache(maxsize=262144)
def _equivalent_answers(gold: str, pred: str) -> bool:
    return any(_equivalent_reading(g, p) for g in _readings(gold) for p in _readings(pred))


def _equivalent_reading(gold: str, pred: str) -> bool:
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

    ``pred`` may be a bare answer or a whole solution, read by :func:`extract_answer` (its final boxes, else
    math-verify's extraction of its final answer); ``gold`` by :func:`extract_gold` (a bare answer, or a reference
    solution with boxes). A broken last box, an empty string or a text with no answer is never equivalent. Falls
    back to a normalised string comparison when math-verify cannot decide. Never raises; cached; time-bounded
    (see the module docstring)."""
    try:
        g, p = _prepare(gold, gold=True), _prepare(pred)
        if g is None or p is None:
            return False
        return _equivalent_answers(g, p)
    except Exception:
        return False


def gold_is_parseable(gold: str) -> bool:
    """True when math-verify parses the gold's answer (:func:`extract_gold`) to at least one sympy expression."""
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
