"""A seccomp system-call filter for the sandboxed program, built with libseccomp via ctypes.

Everything is allowed except what a test program never needs and an escape would: running
other programs (``execve``), debugging or reading other processes, mounting, entering or
creating namespaces, kernel keyrings, BPF, perf events, io_uring (which bypasses seccomp),
module loading, and sockets of any family but ``AF_UNIX``. ``kill`` is not filtered: in
its own PID namespace the program can only signal its own processes (and the namespace's
init ignores signals it has no handler for).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

_ALLOW = 0x7FFF0000
_AF_UNIX = 1
_CMP_NE, _CMP_MASKED_EQ = 1, 7
_DENIED = (
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "quotactl",
    "syslog",
    "acct",
)
_NAMESPACE_FLAGS = (0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_NAMESPACE_FLAGS += (0x02000000, 0x00000080)  # CLONE_NEWCGROUP, CLONE_NEWTIME


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _library() -> ctypes.CDLL:
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
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether libseccomp can be loaded."""
    try:
        _library()
    except OSError:
        return False
    return True


def install() -> None:
    """Load the filter into the calling thread (inherited by its children); it also sets
    ``no_new_privs``. Raises ``OSError`` when libseccomp or the kernel refuse."""
    lib = _library()
    ctx = lib.seccomp_init(_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:

        def rule(action: int, name: str, *conditions: tuple[int, int, int, int]) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                return  # not a system call on this architecture
            array = (_ArgCmp * max(1, len(conditions)))(*(_ArgCmp(*c) for c in conditions))
            result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
            if result < 0:
                raise OSError(-result, f"seccomp rule for {name}")

        denied = _errno_action(errno.EPERM)
        for name in _DENIED:
            rule(denied, name)
        for name in ("socket", "socketpair"):
            rule(_errno_action(errno.EAFNOSUPPORT), name, (0, _CMP_NE, _AF_UNIX, 0))
        for flag in _NAMESPACE_FLAGS:
            rule(denied, "clone", (0, _CMP_MASKED_EQ, flag, flag))
        rule(_errno_action(errno.ENOSYS), "clone3")  # flags unreadable: libc falls back
        result = lib.seccomp_load(ctx)
        if result < 0:
            raise OSError(-result, "seccomp_load")
    finally:
        lib.seccomp_release(ctx)
