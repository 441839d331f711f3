"""Host side of the sandbox: `Sandbox`, `RunResult`, the zygote client, output neutralisation."""

from __future__ import annotations

import json
import os
import pickle
import re
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

from . import values

DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = tuple(
    (
        "math cmath fractions decimal itertools functools collections statistics random numpy sympy scipy mpmath "
        "re string operator heapq bisect numbers typing dataclasses copy json datetime time array enum"
    ).split()
)

_HDR = struct.Struct("!I")
_MAX_REPLY = 4 * 1024 * 1024  # the worker is untrusted: never read more than this per frame


# --------------------------------------------------------------------------- layers, and what each one bounds
LAYERS: tuple[str, ...] = ("netns", "userns", "landlock", "seccomp", "privileges")
DISABLE_ENV = "DEEPMATH_SANDBOX_DISABLE"


def parse_disable(disable: str | Iterable[str] | None = None) -> frozenset[str]:
    """The optional layers to leave off, as if the kernel lacked them: `disable` (names, or one string separated
    by commas or spaces), or when None the environment variable DEEPMATH_SANDBOX_DISABLE. Names: netns (the
    empty network namespace), userns (the unprivileged route to it, needed when not root), landlock, seccomp,
    privileges (the switch to nobody and the clearing of capabilities); "all" means every one of them.
    Unknown names raise ValueError."""
    if disable is None:
        disable = os.environ.get(DISABLE_ENV, "")
    if isinstance(disable, str):
        disable = disable.replace(",", " ").split()
    names = {str(n).strip().lower() for n in disable} - {""}
    if "all" in names:
        names = (names - {"all"}) | set(LAYERS)
    unknown = names - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown sandbox layer(s) {sorted(unknown)}: use {', '.join(LAYERS)} or all")
    return frozenset(names)


def _sysctl(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _host_caps() -> int:
    """This process's effective capability bits (a worker that keeps its capabilities has the same)."""
    try:
        with open("/proc/self/status") as f:
            return next((int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")), 0)
    except (OSError, ValueError):
        return 0


_CAP_SYS_PTRACE, _CAP_SYS_ADMIN, _CAP_SYS_RESOURCE = 19, 21, 24


def active_guards(features: dict) -> frozenset[str]:
    """What holds a snippet back in a worker with this feature report, by name. Always: `rlimits` (memory,
    CPU, file size, core), `timeout` (the wall-clock kill from outside), `checks` (import allow-list, scrubbed
    environment, bounded and neutralised output). Optional: `seccomp`; `landlock` (files, ptrace),
    `landlock_net` (TCP, ABI >= 4), `landlock_scope` (signals and abstract unix sockets, ABI >= 6); `netns`;
    `uid` (a uid the host does not have), `nproc` (RLIMIT_NPROC binds: a non-root worker), `caps` (the worker
    cannot raise its hard rlimits: no CAP_SYS_RESOURCE), `lesser_caps` (it holds fewer capabilities than the
    host, which keeps the host's /proc/PID/environ and ptrace out of reach). Kernel settings of this machine:
    `yama` (ptrace of non-descendants refused), `userns_off` (no user namespaces for the worker)."""
    g = {"rlimits", "timeout", "checks"}
    if features.get("seccomp"):
        g.add("seccomp")
    abi = int(features.get("landlock") or 0)
    g |= {name for name, need in (("landlock", 1), ("landlock_net", 4), ("landlock_scope", 6)) if abi >= need}
    if features.get("netns"):
        g.add("netns")
    priv = features.get("privileges", "")
    host_caps = _host_caps()
    worker_caps = host_caps if priv == "root, capabilities kept" else 0
    if priv == "uid nobody":
        g |= {"uid", "nproc"}
    elif priv in ("capabilities cleared", "none"):  # a non-root host: the worker shares its uid
        g.add("nproc")
    if not worker_caps >> _CAP_SYS_RESOURCE & 1:
        g.add("caps")
    if worker_caps != host_caps:
        g.add("lesser_caps")
    yama = _sysctl("/proc/sys/kernel/yama/ptrace_scope") or 0
    if yama >= 3 or (yama >= 1 and not worker_caps >> _CAP_SYS_PTRACE & 1):
        g.add("yama")
    no_unpriv = _sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0
    no_unpriv |= _sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1
    if _sysctl("/proc/sys/user/max_user_namespaces") == 0 or (
        no_unpriv and not worker_caps >> _CAP_SYS_ADMIN & 1
    ):
        g.add("userns_off")
    return frozenset(g)


# What a snippet could reach, and the guards any one of which bounds it. Time and memory are always bounded
# (wall-clock kill, RLIMIT_AS), except that a worker with capabilities may raise its own rlimits (last line).
THREATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("files and /proc (whatever the worker's uid may read or write)", ("landlock",)),
    ("the host's environment in /proc/PID/environ", ("landlock", "uid", "lesser_caps")),
    ("TCP", ("seccomp", "netns", "landlock_net")),
    ("UDP and raw sockets", ("seccomp", "netns")),
    ("the host's unix sockets by path", ("seccomp",)),
    ("abstract unix sockets", ("seccomp", "netns", "landlock_scope")),
    ("fork (RLIMIT_NPROC does not bind root)", ("seccomp", "nproc")),
    ("running programs", ("seccomp", "landlock")),
    ("signals to the host's processes", ("seccomp", "landlock_scope", "uid")),
    ("ptrace of the host's processes", ("seccomp", "landlock", "uid", "lesser_caps", "yama")),
    ("prlimit on the host's processes", ("seccomp", "uid")),
    ("chmod and chown of the host's files", ("seccomp", "uid")),
    ("new namespaces (more kernel surface)", ("seccomp", "userns_off")),
    ("its own rlimits (memory and CPU then rest on the wall-clock kill alone)", ("caps",)),
)
GUARD_LAYER = {
    "seccomp": "seccomp",
    "landlock": "landlock",
    "landlock_net": "landlock",
    "landlock_scope": "landlock",
    "netns": "netns",
    "uid": "privileges",
    "caps": "privileges",
    "lesser_caps": "privileges",
    "nproc": "privileges",
}
_WHY = {
    "seccomp": "seccomp off (no libseccomp, not Linux, or DEEPMATH_SANDBOX_DISABLE)",
    "landlock": "Landlock off (kernel < 5.13, Landlock not enabled, or DEEPMATH_SANDBOX_DISABLE)",
    "netns": "no network namespace (needs root or user namespaces, or DEEPMATH_SANDBOX_DISABLE)",
    "uid nobody": "",
    "root, capabilities cleared": "workers run as root without capabilities (nobody cannot read this Python, "
    "e.g. under /root)",
    "root, capabilities kept": "workers run as root WITH capabilities (no capset here, or "
    "DEEPMATH_SANDBOX_DISABLE)",
}


def missing_layers(features: dict) -> list[str]:
    """The optional layers absent from a worker with this feature report (userns only matters via netns)."""
    present = {
        "netns": bool(features.get("netns")),
        "landlock": int(features.get("landlock") or 0) >= 1,
        "seccomp": bool(features.get("seccomp")),
        "privileges": features.get("privileges", "uid nobody") == "uid nobody",
    }
    return [layer for layer, ok in present.items() if not ok]


def layer_warnings(features: dict) -> dict[str, str]:
    """One line per missing layer: why it is missing and what is then NOT bounded by the layers that remain."""
    active = active_guards(features)
    lines = {}
    for layer in missing_layers(features):
        why = _WHY.get(layer) or _WHY.get(features.get("privileges", ""))
        if why is None:  # a non-root host
            why = (
                f"workers share the host's uid ({features.get('privileges')}: not root, no uid to switch to)"
            )
        open_ = [
            what
            for what, guards in THREATS
            if not active & set(guards) and any(GUARD_LAYER.get(g) == layer for g in guards)
        ]
        tail = (
            "NOT bounded now: " + "; ".join(open_)
            if open_
            else "the other layers still bound files, network and processes"
        )
        lines[layer] = f"{why}; {tail}"
    return lines


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


# An object's default repr names its address (`<generator object <genexpr> at 0x7f52...>`), which differs from run
# to run (ASLR): shown to the model as is, it would make a greedy trace, and GRPO's rollouts, unrepeatable.
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{4,}>")
ADDRESS_MASK = "at 0x...>"


def mask_addresses(text: str) -> str:
    """`text` with every object address of a default repr replaced by `at 0x...>`: the same on every run."""
    return _ADDRESS.sub(ADDRESS_MASK, text)


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
    value: Any = field(default=None, repr=False)  # the last expression's value (a Sandbox with values=True)

    @property
    def ok(self) -> bool:
        return self.error is None

    def model_text(self) -> str:
        """What goes inside the model's ```output block: stdout, then the error; object addresses masked
        (`mask_addresses`), cut and neutralised."""
        text = self.stdout
        if self.error:
            if text and not text.endswith("\n"):
                text += "\n"
            text += self.error
        return neutralize(truncate(mask_addresses(text), self.max_output_chars))

    def to_dict(self) -> dict:
        return {
            "stdout": self.stdout,
            "error": self.error,
            "timed_out": self.timed_out,
            "duration_s": self.duration_s,
        }


# --------------------------------------------------------------------------- zygote clients (one per host process
# and set of disabled layers: a degraded zygote never serves a fully armed Sandbox, nor the reverse)
_WARNED: set[str] = set()  # warnings already given in this process
_WARN_LOCK = threading.Lock()


class _Zygote:
    def __init__(self, disable: frozenset[str] = frozenset()) -> None:
        self.disable = disable
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.ctrl: socket.socket | None = None
        self.features: dict = {}
        self.worker_features: dict = {}  # the first worker's report (privileges, Landlock as applied)

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
            "from deepmath_lib.sandbox._zygote import main; main(int(sys.argv[2]), sys.argv[3])"
        )
        paths = [p for p in sys.path if p]
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        argv = [json.dumps([pkg_root, *paths]), str(child.fileno()), ",".join(sorted(self.disable))]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot, *argv],
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

    def close(self) -> None:
        with self.lock:
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
            if self.ctrl is not None:
                self.ctrl.close()
                self.ctrl = None

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
        """One RuntimeWarning line per missing layer, each at most once per process: a second zygote with the
        same layer missing stays silent unless what that leaves open differs (only the red-team mixes modes)."""
        for msg in layer_warnings(features).values():
            with _WARN_LOCK:
                if msg in _WARNED:
                    continue
                _WARNED.add(msg)
            warnings.warn(f"deepmath sandbox degraded: {msg}", RuntimeWarning, stacklevel=4)


_ZYGOTES: dict[frozenset[str], _Zygote] = {}
_ZYGOTES_LOCK = threading.Lock()


def _zygote_for(disable: frozenset[str]) -> _Zygote:
    with _ZYGOTES_LOCK:
        if disable not in _ZYGOTES:
            _ZYGOTES[disable] = _Zygote(disable)
        return _ZYGOTES[disable]


def start_zygote(disable: str | Iterable[str] | None = None) -> dict:
    """Start (or reuse) the zygote now, so that the first Sandbox is cheap; returns its feature report.
    `disable`: layers to leave off (see `parse_disable`; None reads DEEPMATH_SANDBOX_DISABLE)."""
    z = _zygote_for(parse_disable(disable))
    z.ensure()
    return dict(z.features)


def stop_zygote(disable: str | Iterable[str] | None = None) -> None:
    """Stop that zygote (its live workers die with it; their Sandboxes restart on the next run)."""
    key = parse_disable(disable)
    with _ZYGOTES_LOCK:
        z = _ZYGOTES.get(key)
    if z is not None:
        z.close()


def sandbox_features(disable: str | Iterable[str] | None = None) -> dict:
    """Protections active in workers on this machine with these layers disabled (None: the environment's)."""
    z = _zygote_for(parse_disable(disable))
    if not z.worker_features:
        with Sandbox(disable=z.disable) as sb:
            sb.run("1")
    return dict(z.worker_features)


# --------------------------------------------------------------------------- the Sandbox
class SandboxError(RuntimeError):
    """The sandbox machinery itself failed (not the snippet)."""


class _Dead(Exception):
    pass


class Sandbox:
    """A persistent, locked-down Python worker for one agent trajectory.

    ``run(code)`` executes a snippet REPL-style and returns a `RunResult`; state persists across calls. A
    snippet that exceeds `timeout` seconds (wall clock) is killed from outside; the next call transparently
    starts a fresh worker and replays the successful snippets so far (their output discarded). `disable` leaves
    optional layers off, as in a container without them (see `parse_disable`; None reads
    DEEPMATH_SANDBOX_DISABLE); each set of disabled layers has its own zygote.

    `values=True` returns the value of a bare last expression as `RunResult.value`, a Python value (tagged JSON
    from the worker, see `values`), instead of adding its repr to `stdout`; `final_answer(x)` always comes back
    as `RunResult.final_answer` that way.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 800,
        allowed_imports: Iterable[str] | None = None,
        *,
        tools: dict[str, Callable] | None = None,
        disable: str | Iterable[str] | None = None,
        values: bool = False,
    ) -> None:
        self.disable = parse_disable(disable)  # fixed for this Sandbox's life, restarts included
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if int(memory_mb) <= 0:
            raise ValueError(f"memory_mb must be positive, got {memory_mb}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_output_chars = int(max_output_chars)
        self.allowed_imports = tuple(DEFAULT_ALLOWED_IMPORTS if allowed_imports is None else allowed_imports)
        self.tools = dict(tools or {})
        self.values = bool(values)
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
            "values": self.values,
        }

    def _spawn(self) -> None:
        zygote = _zygote_for(self.disable)
        sock = zygote.spawn(self._cfg())
        try:
            hello = self._recv(sock, time.monotonic() + 60)
        except (_Dead, TimeoutError) as e:
            sock.close()
            raise SandboxError(f"sandbox worker failed to start: {e}") from None
        self._sock, self._pid = sock, int(hello["pid"])
        self.features = hello.get("features", {})
        if not zygote.worker_features:
            zygote.worker_features = dict(self.features)
        zygote.warn_missing(self.features)
        self._pidfd = -1
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self._pid)
            except OSError:
                self._pidfd = -1

    def _kill(self) -> None:
        if self._pidfd >= 0:
            try:
                # Still alive, so its process group (it called setsid) is its own: take along anything it
                # forked that stayed in the group (possible only where seccomp and RLIMIT_NPROC allow fork).
                signal.pidfd_send_signal(self._pidfd, 0)
                os.killpg(self._pid, signal.SIGKILL)
            except OSError:
                pass
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
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply to parse
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
                try:  # the worker is untrusted: its values are decoded strictly, never unpickled or evaluated
                    value = values.decode(msg.get("value"))
                    final = values.decode(msg.get("final"))
                except ValueError:
                    raise _Dead("malformed value") from None
            except TimeoutError:
                self._kill()
                return RunResult(
                    "",
                    f"timed out after {self.timeout:g}s",
                    True,
                    time.perf_counter() - t0,
                    self.max_output_chars,
                )
            except _Dead as dead:
                self._kill()
                if str(dead).startswith(("malformed", "oversized")):
                    err = f"the sandboxed process sent a {dead}; it was killed and its state restored"
                else:
                    err = "the sandboxed process exited abruptly (os._exit, a crash or a resource limit); state restored"
                return RunResult("", err, False, time.perf_counter() - t0, self.max_output_chars)
            res = RunResult(
                stdout=str(msg.get("stdout") or ""),
                error=None if msg.get("error") is None else str(msg["error"]),
                timed_out=False,
                duration_s=time.perf_counter() - t0,
                max_output_chars=self.max_output_chars,
                final_answer=final,
                is_final_answer=bool(msg.get("is_final")),
                value=value,
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
