"""Kernel isolation of one sandboxed program on Linux: namespaces and a minimal root.

:func:`enter_namespaces` moves the calling process into new user, mount, network, PID,
IPC and UTS namespaces; its next child is PID 1 of the new PID namespace. That child calls
:func:`build_root`, which pivots into a fresh tmpfs holding only read-only binds of the
system libraries and the Python installation, a private ``/proc``, a few device nodes and
a writable, size-limited ``/sandbox``. Everything here uses ``ctypes`` and the standard
library only, because it runs in a bare ``python -I -S`` interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4

UNPRIVILEGED_UID = 65534
"""The host uid (``nobody``) a sandbox started by root runs as, so that the kernel's
process limit applies (it never applies to uid 0)."""

WORKDIR = "/sandbox"
WORKDIR_MB = 64
_NEW_ROOT = "/tmp"  # any existing directory serves as the mount point of the new root
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    """``unshare(2)`` (``os.unshare`` exists only from Python 3.12)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """``mount(2)``."""

    def arg(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    result = _libc.mount(arg(source), arg(target), arg(fstype), ctypes.c_ulong(flags), arg(data))
    _check(result, f"mount {source} on {target}")


def prctl(option: int, value: int) -> None:
    """``prctl(2)`` with one argument."""
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _map_ids_from_helper(flags: int) -> None:
    """As root: unshare, and let a helper still in the parent user namespace map the new
    namespace's root to :data:`UNPRIVILEGED_UID` (a namespace cannot map other host ids
    onto itself)."""
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        code = 1
        try:
            if os.read(ready_r, 1) == b"u":
                target = f"/proc/{os.getppid()}"
                _write(f"{target}/uid_map", f"0 {UNPRIVILEGED_UID} 1\n")
                _write(f"{target}/gid_map", f"0 {UNPRIVILEGED_UID} 1\n")
                code = 0
        finally:
            os._exit(code)
    os.close(ready_r)
    try:
        unshare(flags)
        os.write(ready_w, b"u")
    finally:
        os.close(ready_w)
        _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError("could not map the sandbox's user namespace")


def enter_namespaces() -> None:
    """Enter new user, mount, network, PID, IPC and UTS namespaces (raises ``OSError``
    when the kernel refuses, e.g. unprivileged user namespaces are disabled)."""
    if os.getuid() == 0:
        _map_ids_from_helper(NAMESPACES)
        return
    uid, gid = os.getuid(), os.getgid()
    unshare(NAMESPACES)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1\n")
    _write("/proc/self/gid_map", f"0 {gid} 1\n")


def become_namespace_root() -> None:
    """Take the namespace's uid and gid 0 (the mapped host id) and drop host groups where
    the namespace allows it."""
    with contextlib.suppress(OSError):  # denied where an unprivileged user mapped the ids
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def bind_sources() -> list[str]:
    """Host paths the program needs, read-only: system libraries and the interpreter."""
    paths = {"/usr", os.path.realpath(sys.base_prefix)}  # no virtualenv: runs with -S
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.isdir(top) and not os.path.islink(top):
            paths.add(top)
    paths.update(p for p in (*_DEVICES, *_ETC_FILES) if os.path.exists(p))
    paths = {os.path.realpath(p) if p.startswith("/etc") else p for p in paths}
    # drop paths already inside another bound directory
    return sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths))


def _locked_flags(path: str) -> int:
    """Mount flags a read-only remount must keep (the kernel refuses to clear them)."""
    flags = os.statvfs(path).f_flag
    kept = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}
    return sum(ms for st, ms in kept.items() if flags & st)


def _pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


def build_root(sources: dict[str, int]) -> None:
    """Pivot into a minimal root; ``sources`` maps each host path to an ``O_PATH`` file
    descriptor opened before :func:`become_namespace_root` (whose uid may not be able to
    reach it). Must run as PID 1 of the new PID namespace, for ``/proc``."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = _NEW_ROOT
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in sources.items():
        target = root + path
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        remount = MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(target)
        mount(None, target, None, remount)
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), root + top)
    for directory in ("/proc", WORKDIR, "/tmp", "/.old"):
        os.makedirs(root + directory, exist_ok=True)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    work = f"size={WORKDIR_MB}m,mode=0777"
    mount("tmpfs", root + WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV, work)
    mount(root + WORKDIR, root + "/tmp", None, MS_BIND)
    os.chdir(root)
    _pivot_root(".", ".old")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(WORKDIR)
