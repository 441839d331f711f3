"""The zygote: a small server process, started once per host process, that imports and warms the scientific
stack and forks one locked-down worker per Sandbox. Workers then talk to the host directly over their own
socket (length-prefixed frames: host -> worker opcodes below, worker -> host always JSON, never pickle).

Run as ``python -c 'from deepmath_lib.sandbox._zygote import main; main(FD, "landlock,seccomp")'`` with a
scrubbed environment; the second argument names layers to leave off, exactly as if the kernel lacked them
(see `core.LAYERS`).
"""

from __future__ import annotations

import os

# Single-threaded numerical libraries: workers may not create threads at all (seccomp refuses clone).
for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_k] = "1"

import ast  # noqa: E402
import builtins  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from . import _lockdown as L  # noqa: E402
from . import values as V  # noqa: E402

WARM_MODULES = (
    "math cmath fractions decimal itertools functools collections statistics random re string operator heapq "
    "bisect numbers typing dataclasses copy json datetime time array enum "
    "numpy numpy.linalg numpy.polynomial numpy.random mpmath sympy scipy scipy.special scipy.optimize "
    "scipy.integrate scipy.linalg scipy.stats scipy.sparse scipy.interpolate scipy.io scipy.fft scipy.signal "
    "sympy.ntheory sympy.parsing.sympy_parser mmap"
).split()

OP_RUN, OP_REPLAY, OP_VARS, OP_TOOL_REPLY = b"R", b"P", b"V", b"T"
_HDR = struct.Struct("!I")


# --------------------------------------------------------------------------- worker side
NICENESS = 10  # the workers' scheduling priority below the host's
SPARES = 32  # workers forked ahead, idle until a Sandbox claims one


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(fd: int) -> bytes:
    (n,) = _HDR.unpack(_read_exact(fd, 4))
    return _read_exact(fd, n)


def _send(fd: int, obj: dict) -> None:
    data = json.dumps(obj, default=repr).encode()
    data = _HDR.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


class _Capture:
    """A bounded text sink for stdout/stderr: keeps the head and a tail, counts the rest."""

    def __init__(self, head: int, tail: int) -> None:
        self.head, self.tail_cap = head, tail
        self.parts: list[str] = []
        self.n = 0
        self.total = 0
        self.tail = ""

    def write(self, s) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        k = len(s)
        self.total += k
        if self.n + k <= self.head:
            self.parts.append(s)
            self.n += k
        else:
            room = self.head - self.n
            if room > 0:
                self.parts.append(s[:room])
                self.n = self.head
                s = s[room:]
            self.tail = (self.tail + s[-self.tail_cap :])[-self.tail_cap :]
        return k

    def flush(self) -> None:
        pass

    def close(self) -> None:  # a snippet closing stdout must not break the next one
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False

    def getvalue(self) -> str:
        text = "".join(self.parts)
        if self.total > self.n:
            omitted = self.total - self.n - len(self.tail)
            text += f"\n...[{omitted} characters omitted]...\n" if omitted > 0 else ""
            text += self.tail
        return text


class _FinalAnswer(BaseException):
    def __init__(self, value) -> None:
        super().__init__()
        self.value = value


class _Worker:
    def __init__(self, fd: int, cfg: dict) -> None:
        self.fd = fd
        self.cfg = cfg
        self.allowed = frozenset(cfg["allowed_imports"])
        self.count = 0
        real_import = builtins.__import__

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            top = name.partition(".")[0]
            if level != 0 or top not in self.allowed:
                raise ImportError(f"import of '{name}' is not allowed")
            return real_import(name, globals, locals, fromlist, level)

        safe = dict(builtins.__dict__)
        safe["__import__"] = guarded_import
        for k in ("exit", "quit", "help", "copyright", "credits", "license", "breakpoint", "input"):
            safe.pop(k, None)
        self.ns: dict = {"__name__": "__main__", "__builtins__": safe}
        if cfg.get("tools"):
            for t in cfg["tools"]:
                self.ns[t] = self._tool_proxy(t)
        self.ns["final_answer"] = self._final_answer

    @staticmethod
    def _final_answer(answer=None, *args, **kwargs):
        raise _FinalAnswer(answer)

    def _tool_proxy(self, name: str):
        def call(*args, **kwargs):
            _send(self.fd, {"tool": name, "args": list(args), "kwargs": kwargs})
            reply = json.loads(_recv(self.fd)[1:])
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply["result"]

        call.__name__ = name
        return call

    def _format_error(self, e: BaseException) -> str:
        try:
            # a syntax error is about the snippet, not a call stack: no frames (not even compile()'s)
            tb = None if isinstance(e, SyntaxError) or e.__traceback__ is None else e.__traceback__.tb_next
            te = traceback.TracebackException(type(e), e, tb, limit=-4)
            te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
            lines = "".join(te.format()).rstrip().splitlines()
            lines = [ln for ln in lines if ln.strip()]
            if len(lines) > 7:
                lines = lines[:1] + lines[-6:]
            text = "\n".join(lines)
        except BaseException:  # formatting itself can fail (MemoryError, recursion...)
            text = f"{type(e).__name__}"
        return text[-2000:]

    def run(self, code: str, quiet: bool) -> dict:
        cap = _Capture(self.cfg["head_chars"], self.cfg["tail_chars"])
        self.count += 1
        fname = f"<snippet {self.count}>"
        linecache.cache[fname] = (len(code), None, code.splitlines(True), fname)
        err = None
        final = None
        is_final = False
        value = None  # the last expression's value, tagged (values mode only)
        values_mode = bool(self.cfg.get("values")) and not quiet
        try:
            used = resource.getrusage(resource.RUSAGE_SELF)
            soft = int(used.ru_utime + used.ru_stime + self.cfg["timeout"] + 2)
            _, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard) if hard >= 0 else soft, hard))
        except (ValueError, OSError):
            pass
        sys.stdout = sys.stderr = cap
        t0 = time.perf_counter()
        try:
            tree = ast.parse(code, fname, "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, fname, "exec"), self.ns)
            if last is not None:
                result = eval(compile(ast.Expression(last.value), fname, "eval"), self.ns)
                if values_mode:  # the value travels apart from the printed output (smolagents' executors)
                    value = V.encode(result)
                elif result is not None:  # REPL-like: its repr joins the output (the DeepMath format)
                    cap.write(repr(result) + "\n")
        except _FinalAnswer as fa:
            is_final, final = True, fa.value
        except BaseException as e:  # SystemExit, KeyboardInterrupt... are data too
            err = self._format_error(e)
        finally:
            dt = time.perf_counter() - t0
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if is_final:
            sys.stdout = sys.stderr = cap
            try:
                final = V.encode(final)
            except BaseException as e:  # its repr raised: the snippet's error
                is_final, err = False, self._format_error(e)
            finally:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        out = "" if quiet else cap.getvalue()
        res = {"stdout": out, "error": err, "duration_s": dt}
        if values_mode:
            res["value"] = value
        if is_final:
            res["final"] = final
            res["is_final"] = True
        return res

    def serve(self) -> None:
        while True:
            try:
                msg = _recv(self.fd)
            except (EOFError, OSError):
                return
            op, body = msg[:1], msg[1:]
            if op in (OP_RUN, OP_REPLAY):
                try:
                    res = self.run(body.decode("utf-8", "replace"), quiet=op == OP_REPLAY)
                except BaseException as e:  # noqa: BLE001
                    res = {
                        "stdout": "",
                        "error": f"sandbox internal error: {type(e).__name__}",
                        "duration_s": 0.0,
                    }
                try:
                    _send(self.fd, res)
                except BaseException:
                    # e.g. an object whose repr explodes; report what we can
                    _send(self.fd, {"stdout": "", "error": "unserialisable result", "duration_s": 0.0})
            elif op == OP_VARS:
                try:
                    self.ns.update(pickle.loads(body))
                    _send(self.fd, {"ok": True})
                except BaseException as e:
                    _send(self.fd, {"ok": False, "error": repr(e)})


def _spare_main(chan: socket.socket, z: dict) -> None:
    """A spare: forked ahead while the zygote is idle, it runs nothing until the zygote hands it a Sandbox's
    channel and settings, then becomes that Sandbox's worker exactly as a freshly forked one would."""
    os.setsid()  # own session and process group
    try:
        L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != z["zygote_pid"]:
        os._exit(0)
    try:
        msg, fds, _flags, _addr = socket.recv_fds(chan, 65536, 1)
        cfg = json.loads(msg)
    except (OSError, ValueError):
        os._exit(0)
    chan.close()
    if not fds:
        os._exit(0)
    _worker_main(fds[0], cfg, z)


def _worker_main(fd: int, cfg: dict, z: dict) -> None:
    devnull = os.open("/dev/null", os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    os.close(devnull)
    features = dict(z["features"])
    # Scrub the environment (the zygote's was minimal already) and re-seed the RNGs inherited from the zygote.
    os.environ.clear()
    import random

    random.seed()
    try:
        import numpy as np

        np.random.seed(int.from_bytes(os.urandom(4), "little"))
    except Exception:  # noqa: BLE001
        pass
    L.set_limits(z["base_vm"], cfg["memory_mb"], cfg["cpu_total_s"])
    features["privileges"] = L.drop_privileges(z["to_nobody"], z["clear_caps"])
    try:
        L.prctl(L.PR_SET_DUMPABLE, 0)
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
    except OSError:
        pass
    ll_fd = z["landlock_fd"]
    if ll_fd >= 0:
        try:
            L.landlock_restrict(ll_fd)
        except OSError:
            features["landlock"] = 0
    else:
        features["landlock"] = 0
    seccomp = z["seccomp"]
    if seccomp is not None:
        try:
            seccomp.load()
        except OSError:
            features["seccomp"] = False
    # Nothing inherited from the zygote stays open but our own channel.
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    worker = _Worker(fd, cfg)
    _send(fd, {"hello": True, "pid": os.getpid(), "features": features})
    worker.serve()


# --------------------------------------------------------------------------- zygote side
def _warm() -> None:
    import importlib

    for m in WARM_MODULES:
        try:
            importlib.import_module(m)
        except Exception:  # noqa: BLE001
            pass
    try:  # fill sympy's lazy imports and caches with typical work
        import numpy as np
        import scipy.optimize
        import sympy as sp

        x = sp.symbols("x")
        sp.solve(x**2 - 2, x)
        sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2)
        sp.integrate(x**2, (x, 0, 1))
        sp.factorint(360)
        sp.Rational(1, 3) + sp.sqrt(2)
        sp.sympify("x**2 + 1")
        sp.nsimplify(0.5)
        sp.latex(x**2)
        sp.limit(sp.sin(x) / x, x, 0)
        sp.series(sp.exp(x), x, 0, 3)
        np.linalg.solve(np.eye(2), np.ones(2))
        scipy.optimize.brentq(lambda t: t - 1, 0, 2)
    except Exception:  # noqa: BLE001
        pass


def main(ctrl_fd: int, disable: str = "") -> None:
    ctrl = socket.socket(fileno=ctrl_fd)
    off = set(disable.split(",")) - {""}
    # A disabled layer takes the very path of a kernel without it: same feature report, same warning.
    netns = (
        None if "netns" in off else L.enter_network_namespace(userns="userns" not in off)
    )  # no threads yet
    seccomp = None if "seccomp" in off else L.make_seccomp()
    use_landlock = L.IS_LINUX and "landlock" not in off
    ll_fd, ll_abi = L.landlock_ruleset(L.read_only_paths()) if use_landlock else (-1, 0)
    _warm()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers
    # Workers (and their forks) yield the CPU to the host: model-written code cannot starve the generation it
    # overlaps, and on a 2-core machine decoding runs measurably faster beside busy workers.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    gc.collect()
    gc.freeze()  # keep the warmed heap shared copy-on-write
    L.collapse_heap()  # fewer page-table entries to copy per fork
    z = {
        "zygote_pid": os.getpid(),
        "base_vm": L.vm_size_bytes(),
        "to_nobody": "privileges" not in off and L.can_become_nobody(),
        "clear_caps": "privileges" not in off,
        "seccomp": seccomp,
        "landlock_fd": ll_fd,
        "features": {
            "seccomp": seccomp is not None,
            "landlock": ll_abi,
            "netns": netns or "",
            "pidfd": hasattr(os, "pidfd_open"),
        },
    }
    ctrl.sendall(json.dumps({"ready": True, "features": z["features"]}).encode() + b"\n")
    spares: list[socket.socket] = []  # our ends of the spares' channels, oldest first

    def fork_spare() -> socket.socket | None:
        """A new spare worker (None if the kernel refuses a fork now): our end of its channel."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return None
        if pid == 0:
            try:
                ctrl.close()
                ours.close()
                for sp in spares:
                    sp.close()
                _spare_main(theirs, z)
            finally:
                os._exit(0)
        theirs.close()
        return ours

    while True:
        # requests first; while none is waiting, fork spares up to SPARES (a fork costs milliseconds of a
        # core: done ahead, a burst of new Sandboxes, as at the start of a batch of trajectories, finds them ready)
        if len(spares) < SPARES and not select.select([ctrl], [], [], 0)[0]:
            spare = fork_spare()
            if spare is None:
                select.select([ctrl], [], [], 0.05)  # no fork now: wait for a request, try again later
            else:
                spares.append(spare)
            continue
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 65536, 1)
        except (OSError, ValueError):
            break
        if not msg:
            break
        if not fds:
            continue
        fd = fds[0]
        try:
            json.loads(msg)
        except ValueError:
            os.close(fd)
            continue
        while True:  # the oldest spare, or a fresh one when none is left (or the ones left are gone)
            chan = spares.pop(0) if spares else fork_spare()
            if chan is None:
                break
            try:
                socket.send_fds(chan, [msg], [fd])
                break
            except OSError:  # that spare is gone: the next one
                pass
            finally:
                chan.close()
        os.close(fd)
    os._exit(0)
