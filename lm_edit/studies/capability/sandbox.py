"""Run untrusted generated code in a separate, limited process.

Each program runs in a fresh Python interpreter (isolated mode, no user site) in a
throwaway working directory, with a wall-clock limit, CPU-time, address-space, file-size
and core-dump limits, a new session so the whole process group can be killed, an
environment without proxies or credentials, and a guard that makes sockets, process
spawning and file deletion raise before the program starts. This protects the evaluation
run from mistakes (infinite loops, memory blow-ups, stray network calls); it is not a
security boundary against code written to escape it. Run untrusted models' code only on
machines you can afford to lose, as lm-eval's ``--confirm_run_unsafe_code`` warns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
MAX_FILE_BYTES = 16 * 2**20
OUTPUT_CHARS = 2000
NETWORK_MARKER = "lm-edit sandbox: network access is disabled"

_GUARD = f"""
import builtins, os, shutil, socket, subprocess

class SandboxViolation(Exception):
    pass

def _refuse(what):
    def refuse(*args, **kwargs):
        raise SandboxViolation(what)
    return refuse

_network = _refuse({NETWORK_MARKER!r})
socket.socket = _network
socket.create_connection = _network
socket.getaddrinfo = _network
socket.gethostbyname = _network
socket.socketpair = _network
for _name in ("system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe",
              "spawnv", "spawnve", "spawnvp", "spawnvpe", "kill", "killpg", "remove", "unlink",
              "rmdir", "removedirs", "rename", "renames", "replace", "truncate", "chmod",
              "chown", "putenv"):
    if hasattr(os, _name):
        setattr(os, _name, _refuse("os." + _name + " is disabled in the sandbox"))
subprocess.Popen = _refuse("subprocess is disabled in the sandbox")
shutil.rmtree = _refuse("shutil.rmtree is disabled in the sandbox")
shutil.move = _refuse("shutil.move is disabled in the sandbox")
del builtins, os, shutil, socket, subprocess, _refuse, _network
"""


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one program: ``passed``, ``failed`` (an assertion or another
    exception), ``timeout``, ``memory``, ``network`` or ``killed``."""

    status: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limits(timeout_s: float, memory_mb: int):
    def apply() -> None:
        import resource

        cpu = int(timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _environment(workdir: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=workdir, TMPDIR=workdir, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    return env


def _classify(returncode: int, stderr: str) -> ExecutionResult:
    tail = stderr[-OUTPUT_CHARS:]
    if returncode == 0:
        return ExecutionResult("passed")
    if NETWORK_MARKER in stderr:
        return ExecutionResult("network", tail)
    if "MemoryError" in stderr:
        return ExecutionResult("memory", tail)
    if returncode < 0:
        return ExecutionResult("killed", f"signal {-returncode}")
    return ExecutionResult("failed", tail)


def run_program(
    program: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> ExecutionResult:
    """Run ``program`` (Python source) in the sandbox; it passes when it exits with 0.

    Args:
        program: The full program, tests included (a failing ``assert`` fails it).
        timeout_s: Wall-clock limit; CPU time is limited to the same number of seconds.
        memory_mb: Address-space limit of the process.
    """
    if sys.platform == "win32":
        raise OSError("The code sandbox needs a POSIX system (resource limits, sessions).")
    with tempfile.TemporaryDirectory(prefix="lm-edit-sandbox-") as workdir:
        script = Path(workdir) / "program.py"
        script.write_text(_GUARD + "\n" + program, encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script)],
            cwd=workdir,
            env=_environment(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limits(timeout_s, memory_mb),
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.communicate()
            return ExecutionResult("timeout", f"no exit within {timeout_s:g} s")
        return _classify(process.returncode, stderr.decode("utf-8", "replace"))
