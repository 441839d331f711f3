"""Host side of the sandbox: `Sandbox`, `RunResult`, the zygote client, output neutralisation, `exec_main`."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = tuple(
    (
        "math cmath fractions decimal itertools functools collections statistics random numpy sympy scipy mpmath "
        "re string operator heapq bisect numbers typing dataclasses copy json datetime time array enum"
    ).split()
)

_HDR = struct.Struct("!I")
_MAX_REPLY = 4 * 1024 * 1024  # the worker is untrusted: never read more than this per frame
_FEATURE_HELP = {
    "seccomp": "seccomp unavailable (no libseccomp or non-Linux): sockets/exec/fork are NOT refused by the kernel",
    "landlock": "Landlock unavailable (kernel < 5.13 or disabled): file access rests on uid/permissions only",
    "netns": "no new network namespace (no root, no unprivileged user namespaces): network rests on seccomp",
    "privileges": "workers keep the host's uid (capabilities cleared; no separate uid, e.g. python under /root)",
}


# --------------------------------------------------------------------------- results and text hygiene
def neutralize(text: str) -> str:
    """Make text safe to place inside the model's ```output block: it can never close the block, open or close
    a tool call, fake a boxed answer or a chat special token."""
    subs = (
        ("```", "'''"),
        ("</tool_call>", "</tool_call_>"),
        ("<tool_call>", "<tool_call_>"),
        ("\\boxed", "boxed"),
        ("\\fbox", "fbox"),
        ("<|", "< |"),
    )
    changed = True
    while changed:
        changed = False
        for a, b in subs:
            if a in text:
                text = text.replace(a, b)
                changed = True
    return text


def truncate(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    head = (limit * 2) // 3
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n...[output truncated: {omitted} characters omitted]...\n{text[-tail:] if tail else ''}"


@dataclass
class RunResult:
    stdout: str = ""
    error: str | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    max_output_chars: int = field(default=800, repr=False)
    final_answer: Any = field(default=None, repr=False)
    is_final_answer: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def model_text(self) -> str:
        """What goes inside the model's ```output block: stdout, then the error; cut and neutralised."""
        text = self.stdout
        if self.error:
            if text and not text.endswith("\n"):
                text += "\n"
            text += self.error
        return neutralize(truncate(text, self.max_output_chars))

    def to_dict(self) -> dict:
        return {
            "stdout": self.stdout,
            "error": self.error,
            "timed_out": self.timed_out,
            "duration_s": self.duration_s,
        }


# --------------------------------------------------------------------------- zygote client (one per host process)
class _Zygote:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.ctrl: socket.socket | None = None
        self.features: dict = {}
        self.warned = False

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        boot = (
            "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
            "from deepmath_lib.sandbox._zygote import main; main(int(sys.argv[2]))"
        )
        paths = [p for p in sys.path if p]
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot, json.dumps([pkg_root, *paths]), str(child.fileno())],
            pass_fds=[child.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
        child.close()
        parent.settimeout(120)
        line = parent.recv(65536)
        parent.settimeout(None)
        if not line:
            raise RuntimeError("sandbox zygote failed to start")
        self.features = json.loads(line)["features"]
        self.ctrl = parent

    def ensure(self) -> None:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()

    def spawn(self, cfg: dict) -> socket.socket:
        """Ask the zygote for a worker; returns our end of its channel (the worker says hello on it)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        payload = json.dumps(cfg).encode()
        try:
            for attempt in (0, 1):
                with self.lock:
                    if self.proc is None or self.proc.poll() is not None:
                        self._start()
                    try:
                        socket.send_fds(self.ctrl, [payload], [theirs.fileno()])
                        break
                    except OSError:
                        self.proc.kill()
                        self.proc = None
                        if attempt:
                            raise
        finally:
            theirs.close()
        return ours

    def warn_missing(self, features: dict) -> None:
        if self.warned:
            return
        self.warned = True
        missing = [msg for k, msg in _FEATURE_HELP.items() if k in features and not features[k]]
        if features.get("privileges", "uid nobody") != "uid nobody":
            missing.append(_FEATURE_HELP["privileges"] + f" [{features.get('privileges')}]")
        for msg in missing:
            warnings.warn(f"deepmath sandbox degraded: {msg}", RuntimeWarning, stacklevel=4)


_ZYGOTE = _Zygote()


def start_zygote() -> dict:
    """Start (or reuse) the zygote now, so that the first Sandbox is cheap; returns its feature report."""
    _ZYGOTE.ensure()
    return dict(_ZYGOTE.features)


_FEATURES: dict = {}


def sandbox_features() -> dict:
    """Protections active in workers on this machine (after one Sandbox has been created)."""
    if not _FEATURES:
        with Sandbox() as sb:
            sb.run("1")
    return dict(_FEATURES)


# --------------------------------------------------------------------------- the Sandbox
class SandboxError(RuntimeError):
    """The sandbox machinery itself failed (not the snippet)."""


class _Dead(Exception):
    pass


class Sandbox:
    """A persistent, locked-down Python worker for one agent trajectory.

    ``run(code)`` executes a snippet REPL-style and returns a `RunResult`; state persists across calls. A
    snippet that exceeds `timeout` seconds (wall clock) is killed from outside; the next call transparently
    starts a fresh worker and replays the successful snippets so far (their output discarded).
    """

    def __init__(
        self,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 800,
        allowed_imports: Iterable[str] | None = None,
        *,
        tools: dict[str, Callable] | None = None,
    ) -> None:
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_output_chars = int(max_output_chars)
        self.allowed_imports = tuple(DEFAULT_ALLOWED_IMPORTS if allowed_imports is None else allowed_imports)
        self.tools = dict(tools or {})
        self.history: list[str] = []
        self._variables: list[bytes] = []
        self._sock: socket.socket | None = None
        self._pid = 0
        self._pidfd = -1
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self.features: dict = {}
        self._spawn()

    # -- lifecycle
    def _cfg(self) -> dict:
        return {
            "timeout": self.timeout,
            "memory_mb": self.memory_mb,
            "cpu_total_s": int(max(600, 60 * self.timeout)),
            "allowed_imports": list(self.allowed_imports),
            "head_chars": max(4 * self.max_output_chars, 8192),
            "tail_chars": max(self.max_output_chars, 1024),
            "tools": sorted(self.tools),
        }

    def _spawn(self) -> None:
        sock = _ZYGOTE.spawn(self._cfg())
        try:
            hello = self._recv(sock, time.monotonic() + 60)
        except (_Dead, TimeoutError) as e:
            sock.close()
            raise SandboxError(f"sandbox worker failed to start: {e}") from None
        self._sock, self._pid = sock, int(hello["pid"])
        self.features = hello.get("features", {})
        if not _FEATURES:
            _FEATURES.update(self.features)
        _ZYGOTE.warn_missing(self.features)
        self._pidfd = -1
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self._pid)
            except OSError:
                self._pidfd = -1

    def _kill(self) -> None:
        if self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self._pidfd)
            self._pidfd = -1
        elif self._pid:
            try:
                os.killpg(self._pid, signal.SIGKILL)
            except OSError:
                pass
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._pid = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._kill()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._kill()
        except Exception:  # noqa: BLE001
            pass

    # -- framing
    @staticmethod
    def _send(sock: socket.socket, op: bytes, body: bytes) -> None:
        try:
            sock.sendall(_HDR.pack(len(body) + 1) + op + body)
        except OSError as e:
            raise _Dead(str(e)) from None

    @staticmethod
    def _read(sock: socket.socket, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            try:
                chunk = sock.recv(min(n - len(buf), 1 << 20))
            except TimeoutError:
                raise
            except OSError as e:
                raise _Dead(str(e)) from None
            if not chunk:
                raise _Dead("worker exited")
            buf += chunk
        return bytes(buf)

    def _recv(self, sock: socket.socket, deadline: float) -> dict:
        (n,) = _HDR.unpack(self._read(sock, 4, deadline))
        if n > _MAX_REPLY:
            raise _Dead("oversized reply")
        try:
            obj = json.loads(self._read(sock, n, deadline))
        except ValueError:
            raise _Dead("malformed reply") from None
        if not isinstance(obj, dict):
            raise _Dead("malformed reply")
        return obj

    # -- execution
    def _exchange(self, op: bytes, code: str, timeout: float) -> dict:
        """Send one snippet and wait for its result, serving tool calls meanwhile. Raises TimeoutError/_Dead."""
        deadline = time.monotonic() + timeout
        self._send(self._sock, op, code.encode("utf-8", "surrogatepass"))
        while True:
            msg = self._recv(self._sock, deadline)
            if "tool" not in msg:
                return msg
            t0 = time.monotonic()
            reply = self._call_tool(msg)
            deadline += time.monotonic() - t0  # tool time is not the snippet's
            self._send(self._sock, b"T", json.dumps(reply, default=repr).encode())

    def _call_tool(self, msg: dict) -> dict:
        fn = self.tools.get(str(msg.get("tool")))
        if fn is None:
            return {"error": f"unknown tool {msg.get('tool')!r}"}
        try:
            args = msg.get("args") or []
            kwargs = msg.get("kwargs") or {}
            result = fn(*args, **kwargs)
            json.dumps(result)
            return {"result": result}
        except (TypeError, ValueError):
            return {"result": repr(result)}
        except Exception as e:  # noqa: BLE001
            return {"error": f"{type(e).__name__}: {e}"}

    def _restore(self) -> str | None:
        """Fresh worker, replay variables and successful snippets. Returns a note when replay fell short."""
        self._kill()
        self._spawn()
        self.restarts += 1
        for blob in self._variables:
            self._send(self._sock, b"V", blob)
            self._recv(self._sock, time.monotonic() + 30)
        for i, code in enumerate(self.history):
            try:
                res = self._exchange(b"P", code, self.timeout)
            except (TimeoutError, _Dead):
                self._kill()
                self._spawn()
                self.history = self.history[:i]
                return "(note: earlier state could not be fully restored)"
            if res.get("error") is not None:
                self.history = self.history[:i]
                return "(note: earlier state could not be fully restored)"
        return None

    def run(self, code: str) -> RunResult:
        with self._lock:
            if self._closed:
                raise SandboxError("Sandbox is closed")
            note = None
            if self._sock is None:
                note = self._restore()
            t0 = time.perf_counter()
            try:
                msg = self._exchange(b"R", code, self.timeout)
            except TimeoutError:
                self._kill()
                return RunResult(
                    "",
                    f"timed out after {self.timeout:g}s",
                    True,
                    time.perf_counter() - t0,
                    self.max_output_chars,
                )
            except _Dead:
                self._kill()
                err = "the sandboxed process exited abruptly (os._exit, a crash or a resource limit); state restored"
                return RunResult("", err, False, time.perf_counter() - t0, self.max_output_chars)
            res = RunResult(
                stdout=str(msg.get("stdout") or ""),
                error=None if msg.get("error") is None else str(msg["error"]),
                timed_out=False,
                duration_s=time.perf_counter() - t0,
                max_output_chars=self.max_output_chars,
                final_answer=msg.get("final"),
                is_final_answer=bool(msg.get("is_final")),
            )
            if res.error is None:
                self.history.append(code)
            if note:
                res.stdout = f"{note}\n{res.stdout}"
            return res

    def send_variables(self, variables: dict[str, Any]) -> list[str]:
        """Copy picklable host values into the worker's namespace (host -> worker only). Returns skipped names."""
        good, skipped = {}, []
        for k, v in variables.items():
            try:
                pickle.dumps(v)
                good[k] = v
            except Exception:  # noqa: BLE001
                skipped.append(k)
        if good:
            blob = pickle.dumps(good)
            with self._lock:
                if self._sock is None:
                    self._restore()
                self._variables.append(blob)
                self._send(self._sock, b"V", blob)
                self._recv(self._sock, time.monotonic() + 30)
        return skipped


# --------------------------------------------------------------------------- CLI entry
def exec_main(code: str, timeout: float = 5.0, as_json: bool = False) -> int:
    """`deepmath exec`: run one snippet in a fresh Sandbox. Exit 0 even if the snippet fails (that is data)."""
    try:
        with Sandbox(timeout=timeout, max_output_chars=100_000) as sb:
            res = sb.run(code)
    except Exception as e:  # noqa: BLE001
        print(f"sandbox failure: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(res.to_dict()))
    else:
        text = res.stdout
        if res.error:
            text += ("" if not text or text.endswith("\n") else "\n") + res.error
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
