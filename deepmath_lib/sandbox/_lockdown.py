"""OS-level lock-down primitives for sandbox workers (Linux): seccomp, Landlock, namespaces, rlimits.

Everything here is prepared once in the zygote (before it forks) and applied in each worker right after the
fork, so that a worker costs one fork plus a handful of syscalls. Every feature is optional: where the kernel
or the C library lacks it, the function reports False and the caller degrades (and warns once).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import resource
import sys
import sysconfig

IS_LINUX = sys.platform.startswith("linux")

_libc = ctypes.CDLL(None, use_errno=True) if IS_LINUX else None

# x86_64 and the generic table (aarch64, riscv) share these numbers for the newer syscalls.
_NR = {"landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446}
_NR_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine())

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _syscall(nr: int, *args) -> int:
    res = _libc.syscall(ctypes.c_long(nr), *args)
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return res


def prctl(option: int, arg2: int = 0) -> None:
    if _libc is None:
        return
    if _libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --------------------------------------------------------------------------- network namespace
def enter_network_namespace(userns: bool = True) -> str | None:
    """Move the *calling* (single-threaded) process into a fresh, empty network namespace.

    Root: plain unshare(CLONE_NEWNET). Others: an unprivileged user namespace mapping our own uid/gid (skipped
    when `userns` is False, as if the kernel refused user namespaces). Returns a short description of what was
    done, or None when impossible.
    """
    if _libc is None:
        return None
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWNET) == 0:
        return "netns"
    if not userns or _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return None
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return "userns+netns"


# --------------------------------------------------------------------------- Landlock
class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8


def landlock_abi() -> int:
    if _libc is None:
        return 0
    try:
        return _syscall(_NR["landlock_create_ruleset"], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except OSError:
        return 0


def read_only_paths() -> list[str]:
    """What a worker may read: the interpreter's stdlib and site-packages, system libraries, two devices."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= {
        v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    paths |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages", "lib-dynload"))}
    # sys.prefix can be a home directory (pyenv): never allow a bare home or /, only the python trees.
    paths = {os.path.join(p, "lib") if p in ("/usr", "/usr/local") else p for p in paths}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/dev/null", "/dev/urandom"}
    return sorted(p for p in paths if p and p != "/" and os.path.exists(p))


def landlock_ruleset(paths: list[str]) -> tuple[int, int]:
    """Build a ruleset (fd, abi) that forbids every write and every read outside `paths`, and (ABI>=4) TCP,
    and (ABI>=6) signals and abstract unix sockets outside the domain. (-1, 0) when unavailable."""
    abi = landlock_abi()
    if abi <= 0:
        return -1, 0
    bits = {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)
    attr = _RulesetAttr(handled_access_fs=(1 << bits) - 1)
    size = 8
    if abi >= 4:
        attr.handled_access_net, size = 3, 16
    if abi >= 6:
        attr.scoped, size = 3, 24
    fd = _syscall(
        _NR["landlock_create_ruleset"], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    for p in paths:
        try:
            pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            is_dir = os.path.isdir(p)
            access = (_LL_READ_FILE | _LL_READ_DIR | _LL_EXECUTE) if is_dir else _LL_READ_FILE
            rule = _PathBeneath(allowed_access=access, parent_fd=pfd)
            _syscall(
                _NR["landlock_add_rule"],
                ctypes.c_int(fd),
                ctypes.c_int(1),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
        except OSError:
            pass
        finally:
            os.close(pfd)
    return fd, abi


def landlock_restrict(fd: int) -> None:
    _syscall(_NR["landlock_restrict_self"], ctypes.c_int(fd), ctypes.c_uint32(0))


# --------------------------------------------------------------------------- seccomp (libseccomp via ctypes)
_EPERM_SYSCALLS = """
socket socketpair connect bind listen accept accept4 sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg
getsockopt setsockopt shutdown getpeername getsockname
execve execveat fork vfork clone
ptrace process_vm_readv process_vm_writev process_madvise kcmp pidfd_open pidfd_getfd pidfd_send_signal
kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo
mount umount2 unshare setns pivot_root chroot open_tree open_tree_attr move_mount fsopen fsconfig fsmount fspick
mount_setattr
bpf perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register keyctl add_key request_key
kexec_load kexec_file_load init_module finit_module delete_module reboot swapon swapoff acct quotactl quotactl_fd
syslog personality iopl ioperm modify_ldt lookup_dcookie name_to_handle_at open_by_handle_at uselib ustat sysfs
setpriority sched_setscheduler sched_setparam sched_setattr sched_setaffinity ioprio_set migrate_pages move_pages
get_robust_list fanotify_init vhangup settimeofday clock_settime clock_adjtime adjtimex sethostname setdomainname
chmod fchmod fchmodat fchmodat2 chown fchown fchownat lchown utime utimes utimensat futimesat
setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr setxattrat removexattrat mknod mknodat
msgget msgsnd msgrcv msgctl semget semop semtimedop semctl shmget shmat shmctl shmdt
mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr
""".split()
_ENOSYS_SYSCALLS = ["clone3"]  # glibc falls back to clone(), which is refused with EPERM


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1


def _scmp_errno(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


class SeccompFilter:
    """A libseccomp context built in the zygote; `load()` applies it to the calling process (the worker)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
        if not self._ctx:
            raise OSError("seccomp_init failed")
        self.denied: list[str] = []
        for names, action in (
            (_EPERM_SYSCALLS, _scmp_errno(errno.EPERM)),
            (_ENOSYS_SYSCALLS, _scmp_errno(errno.ENOSYS)),
        ):
            for n in names:
                nr = lib.seccomp_syscall_resolve_name(n.encode())
                if nr < 0:
                    continue
                if lib.seccomp_rule_add_array(self._ctx, action, nr, 0, None) == 0:
                    self.denied.append(n)
        # prlimit64 only on ourselves (pid 0): no lowering the limits of a sibling sandbox.
        nr = lib.seccomp_syscall_resolve_name(b"prlimit64")
        if nr >= 0:
            cmp = (_ArgCmp * 1)(_ArgCmp(0, _SCMP_CMP_NE, 0, 0))
            lib.seccomp_rule_add_array(self._ctx, _scmp_errno(errno.EPERM), nr, 1, cmp)

        self._prog = self._export()

    def _export(self):
        """The filter compiled once to BPF (what `seccomp_load` would compile again in every worker, about 2-7 ms
        each): a `sock_fprog` ready for prctl, or None when libseccomp cannot export it (load() then compiles)."""
        try:
            fd = os.memfd_create("seccomp-bpf")
        except (AttributeError, OSError):
            return None
        try:
            if self._lib.seccomp_export_bpf(ctypes.c_void_p(self._ctx), fd) != 0:
                return None
            size = os.lseek(fd, 0, os.SEEK_END)
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        if not data or len(data) % 8:
            return None
        self._code = ctypes.create_string_buffer(data, len(data))  # kept alive with the filter
        return _SockFprog(len(data) // 8, ctypes.cast(self._code, ctypes.c_void_p))

    def load(self) -> None:
        """Install the filter on the calling process (no_new_privs must be set, as the worker does first)."""
        if self._prog is not None:
            if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"seccomp filter refused: {os.strerror(e)}")
            return
        rc = self._lib.seccomp_load(self._ctx)
        if rc != 0:
            raise OSError(-rc, "seccomp_load failed")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def make_seccomp() -> SeccompFilter | None:
    if not IS_LINUX:
        return None
    try:
        return SeccompFilter()
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- capabilities, uid, rlimits
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def world_readable(path: str) -> bool:
    """Can a user with no relation to the owner (nobody) reach and read `path`?"""
    import stat

    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        p = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def can_become_nobody() -> bool:
    """Dropping to nobody is only possible if nobody can still read the interpreter's own files (pyenv under
    /root is not): otherwise lazy imports would break."""
    if not IS_LINUX or os.geteuid() != 0:
        return False
    paths = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sys.executable]
    return all(world_readable(p) for p in paths)


def drop_privileges(to_nobody: bool = True, clear_caps: bool = True) -> str:
    """Root: become nobody (drops all capabilities). Anyone: clear the capability sets (root without
    capabilities cannot override file permissions or raise its hard limits). `clear_caps=False` takes the path
    of a machine without capset. Returns what was done: "uid nobody", "root, capabilities cleared",
    "capabilities cleared" (a non-root host), "root, capabilities kept" or "none" (non-root, nothing done)."""
    done = "none"
    if to_nobody and IS_LINUX and os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            done = "uid nobody"
        except OSError:
            pass
    if clear_caps and _libc is not None and _NR_CAPSET is not None:
        hdr = _CapHeader(0x20080522, 0)
        data = (_CapData * 2)()
        if _libc.syscall(ctypes.c_long(_NR_CAPSET), ctypes.byref(hdr), data) == 0 and done == "none":
            done = "root, capabilities cleared" if os.geteuid() == 0 else "capabilities cleared"
    if done == "none" and IS_LINUX and os.geteuid() == 0:
        done = "root, capabilities kept"
    return done


def vm_size_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def set_limits(base_vm: int, memory_mb: int, cpu_hard_s: int, nofile: int = 64) -> None:
    def _set(which: int, soft: int, hard: int | None = None) -> None:
        try:
            resource.setrlimit(which, (soft, soft if hard is None else hard))
        except (ValueError, OSError):
            pass

    _set(resource.RLIMIT_AS, base_vm + memory_mb * 1024 * 1024)
    _set(resource.RLIMIT_CPU, cpu_hard_s, cpu_hard_s + 5)
    _set(resource.RLIMIT_FSIZE, 0)
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_NOFILE, nofile)
    if hasattr(resource, "RLIMIT_NPROC"):
        _set(resource.RLIMIT_NPROC, 0)
    if hasattr(resource, "RLIMIT_MEMLOCK"):
        _set(resource.RLIMIT_MEMLOCK, 0)
    if hasattr(resource, "RLIMIT_MSGQUEUE"):
        _set(resource.RLIMIT_MSGQUEUE, 0)


MADV_COLLAPSE = 25  # Linux 6.1+
_HUGE = 2 * 1024 * 1024


def collapse_heap() -> int:
    """Back the warmed heap (private anonymous memory) with 2 MiB pages, where the kernel can: a fork then copies a
    page-table entry per 2 MiB instead of one per 4 KiB, so each worker starts faster (a warm zygote forks about a
    third faster here). Best effort: returns the bytes collapsed, 0 on kernels without MADV_COLLAPSE."""
    if _libc is None:
        return 0
    madvise = _libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    try:
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
    except OSError:
        return 0
    for line in maps:
        fields = line.split()
        if len(fields) < 5 or not fields[1].startswith("rw") or fields[1][3] != "p":
            continue
        if len(fields) > 5 and fields[5] != "[heap]":  # file-backed or the stack
            continue
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        start, end = (lo + _HUGE - 1) & ~(_HUGE - 1), hi & ~(_HUGE - 1)
        if end - start >= _HUGE and madvise(start, end - start, MADV_COLLAPSE) == 0:
            done += end - start
    return done
