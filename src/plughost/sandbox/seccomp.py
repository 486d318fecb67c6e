"""The seccomp filter of a plugin process, built with libseccomp through ctypes.

Why libseccomp over ctypes: libseccomp2 ships with every Debian/Ubuntu base system (apt and
systemd depend on it), so nothing is installed, and unlike a hand-assembled BPF program it
resolves syscall names per architecture, checks the audit architecture (a syscall made
through another ABI, such as the 32-bit ``int 0x80`` entry or x32, kills the process) and
compiles argument comparisons correctly. The PyPI ``pyseccomp`` package is a ctypes wrapper
around the same library; Debian's ``python3-seccomp`` is built for the system interpreter
only. Plugin code never gets this module's power: it runs after the filter is loaded.

The filter is a denylist on top of "allow" (Python, NumPy and PyTorch use a wide and
changing set of syscalls): it refuses, with EPERM, starting programs, debugging other
processes, mounting, new namespaces, kernel keyrings, BPF, perf, io_uring, module and
kexec loading, and the terminal-injection ioctls; ``clone3`` answers ENOSYS so the C
library falls back to ``clone``, whose namespace flags are checked. Unless egress is allowed,
sockets of any family but AF_UNIX are refused as well.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterable

LIBRARY = "libseccomp.so.2"

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_MASKED_EQ = 7
NR_SCMP_ERROR = -1

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_MAX_CHECKED = 64  # families at or above this number are refused in one rule

TIOCSTI = 0x5412
TIOCLINUX = 0x541C

CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

DENIED_SYSCALLS = (
    # start another program (the interpreter is already running; nothing else may)
    "execve",
    "execveat",
    # reach into other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # file systems and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    # kernel attack surface rarely needed by inference code
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "lookup_dcookie",
    "fanotify_init",
    "uselib",
    "nfsservctl",
    # the machine itself
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "iopl",
    "ioperm",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
)


class SeccompUnavailable(Exception):
    """libseccomp is missing or the kernel refused the filter."""


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    """``SCMP_ACT_ERRNO(code)``."""
    return 0x00050000 | (code & 0x0000FFFF)


def _load_library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"{LIBRARY} cannot be loaded: {exc}") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


class _Filter:
    """A libseccomp context being filled with rules."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not self._ctx:
            raise SeccompUnavailable("seccomp_init failed")

    def release(self) -> None:
        self._lib.seccomp_release(self._ctx)

    def attr(self, attribute: int, value: int) -> None:
        rc = self._lib.seccomp_attr_set(self._ctx, attribute, value)
        if rc < 0:
            raise SeccompUnavailable(f"seccomp_attr_set({attribute}) failed: {-rc}")

    def rule(self, action: int, name: str, *cmps: tuple[int, int, int, int]) -> bool:
        """Add one rule; False when this architecture has no such syscall."""
        number = self._lib.seccomp_syscall_resolve_name(name.encode())
        if number == NR_SCMP_ERROR:
            return False
        array = (_ArgCmp * max(1, len(cmps)))(*(_ArgCmp(*c) for c in cmps))
        rc = self._lib.seccomp_rule_add_array(self._ctx, action, number, len(cmps), array)
        if rc < 0:
            raise SeccompUnavailable(f"cannot add the seccomp rule for {name}: error {-rc}")
        return True

    def load(self) -> None:
        rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            raise SeccompUnavailable(f"the kernel refused the seccomp filter: error {-rc}")


def socket_families_denied(allow_inet: bool) -> list[int]:
    """Address families refused below :data:`AF_MAX_CHECKED` (larger ones always are)."""
    allowed = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK} if allow_inet else {AF_UNIX}
    return [family for family in range(AF_MAX_CHECKED) if family not in allowed]


def install_filter(allow_inet: bool, extra_denied: Iterable[str] = ()) -> None:
    """Load the filter into this process (all threads); it cannot be removed afterwards.

    Also sets ``no_new_privs``. Raises SeccompUnavailable when it could not be installed.
    """
    lib = _load_library()
    flt = _Filter(lib)
    try:
        flt.attr(SCMP_FLTATR_CTL_NNP, 1)
        flt.attr(SCMP_FLTATR_CTL_TSYNC, 1)
        deny = _errno_action(errno.EPERM)
        for name in (*DENIED_SYSCALLS, *extra_denied):
            flt.rule(deny, name)
        flt.rule(_errno_action(errno.ENOSYS), "clone3")
        for flag in CLONE_NAMESPACE_FLAGS:
            flt.rule(deny, "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        for request in (TIOCSTI, TIOCLINUX):
            flt.rule(deny, "ioctl", (1, SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, request))
        for family in socket_families_denied(allow_inet):
            flt.rule(deny, "socket", (0, SCMP_CMP_EQ, family, 0))
        flt.rule(deny, "socket", (0, SCMP_CMP_GE, AF_MAX_CHECKED, 0))
        flt.load()
    finally:
        flt.release()


def seccomp_mode() -> int:
    """This process's seccomp mode from /proc (0 none, 2 filter); -1 when unreadable."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return -1
    return -1
