"""A Python-level guard: common ways to reach the network, spawn processes or delete
files raise before the program starts.

This turns honest mistakes into clear failures (a stray ``socket.create_connection``
reports ``network``); it is no boundary, since code can reach the same system calls through
``posix``, ``_socket``, ``ctypes`` or by reloading a module. The kernel layers are the
boundary.
"""

from __future__ import annotations

NETWORK_MARKER = "lm-edit sandbox: network access is disabled"

_OS_NAMES = (
    "system",
    "popen",
    "fork",
    "forkpty",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "kill",
    "killpg",
    "remove",
    "unlink",
    "rmdir",
    "removedirs",
    "rename",
    "renames",
    "replace",
    "truncate",
    "chmod",
    "chown",
    "putenv",
)


class SandboxViolation(Exception):
    """Raised by a disabled function."""


def _refuse(what: str):
    def refuse(*args: object, **kwargs: object) -> None:
        raise SandboxViolation(what)

    return refuse


def install() -> None:
    """Replace the common entry points in ``socket``, ``os``, ``subprocess`` and ``shutil``."""
    import os
    import shutil
    import socket
    import subprocess

    network = _refuse(NETWORK_MARKER)
    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname", "socketpair"):
        setattr(socket, name, network)
    for name in _OS_NAMES:
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name} is disabled in the sandbox"))
    subprocess.Popen = _refuse("subprocess is disabled in the sandbox")
    shutil.rmtree = _refuse("shutil.rmtree is disabled in the sandbox")
    shutil.move = _refuse("shutil.move is disabled in the sandbox")
