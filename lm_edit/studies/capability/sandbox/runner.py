"""The parent's side: start the sandbox, feed it, read its output with a cap, judge."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lm_edit.studies.capability.sandbox.guard import NETWORK_MARKER

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
MAX_FILE_BYTES = 16 * 2**20
STDERR_CAP_BYTES = 2**20
"""Standard error kept from one program; more ends it with status ``output``."""
REPORT_CAP_BYTES = 4096
OUTPUT_CHARS = 2000
LAYERS = (
    "user_namespace",
    "network_namespace",
    "pid_namespace",
    "ipc_namespace",
    "mount_namespace",
    "private_filesystem",
    "no_capabilities",
    "seccomp",
    "process_limit",
    "rlimits",
    "python_guard",
)
"""The isolation layers, as reported per run (see :func:`run_program`)."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[4])
_BOOT = (
    f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
    "from lm_edit.studies.capability.sandbox.child import main; main()"
)


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one program: ``passed``, ``failed`` (an assertion, another
    exception, or an exit before the last statement), ``timeout``, ``memory``,
    ``network``, ``output`` (standard error over the cap) or ``killed``; ``layers`` are
    the isolation layers that were in force (see :data:`LAYERS`)."""

    status: str
    detail: str = ""
    layers: dict[str, bool] = field(default_factory=dict, compare=False)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _environment(workdir: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=workdir, TMPDIR=workdir, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    return env


def kernel_layers() -> dict[str, bool]:
    """Which kernel layers to attempt on this platform (each is still reported only when
    it took effect)."""
    linux = sys.platform.startswith("linux")
    return {"namespaces": linux, "seccomp": linux}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Reader:
    """Reads the sandbox's stderr and report pipes until end of file, a cap or a deadline,
    so that the parent's memory stays bounded whatever the program writes."""

    def __init__(self, stderr: int, report: int) -> None:
        self.data = {stderr: bytearray(), report: bytearray()}
        self.caps = {stderr: STDERR_CAP_BYTES, report: REPORT_CAP_BYTES}
        self.stderr, self.report = stderr, report

    def read(self, deadline: float) -> str:
        """``"eof"``, ``"cap"`` or ``"deadline"``."""
        with selectors.DefaultSelector() as selector:
            for fd in self.data:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            open_fds = set(self.data)
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "deadline"
                for key, _ in selector.select(left):
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        open_fds.discard(fd)
                        continue
                    self.data[fd] += chunk
                    if len(self.data[fd]) > self.caps[fd]:
                        del self.data[fd][self.caps[fd] :]
                        return "cap"
        return "eof"


def _judge(
    returncode: int, stderr: str, report: list[str], nonce: str, layers: dict[str, bool]
) -> ExecutionResult:
    tail = stderr[-OUTPUT_CHARS:]
    if returncode == 0 and nonce in report[1:]:
        return ExecutionResult("passed", "", layers)
    if returncode == 0:
        return ExecutionResult("failed", "exited before its last statement ran", layers)
    if NETWORK_MARKER in stderr:
        return ExecutionResult("network", tail, layers)
    if "MemoryError" in stderr:
        return ExecutionResult("memory", tail, layers)
    if returncode < 0 or returncode > 128:
        signal_number = -returncode if returncode < 0 else returncode - 128
        return ExecutionResult("killed", f"signal {signal_number}\n{tail}".strip(), layers)
    return ExecutionResult("failed", tail, layers)


def _layers(report: list[str]) -> dict[str, bool]:
    try:
        found = json.loads(report[0]) if report else {}
    except ValueError:
        found = {}
    return {name: found.get(name) is True for name in LAYERS}


def run_program(
    program: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> ExecutionResult:
    """Run ``program`` (Python source) in the sandbox; it passes when it runs to its last
    statement and exits with 0.

    Args:
        program: The full program, tests included (a failing ``assert`` fails it).
        timeout_s: Wall-clock limit, sandbox setup included; CPU time is limited to the
            same number of seconds.
        memory_mb: Address-space limit of the program's process.
    """
    if sys.platform == "win32":
        raise OSError("The code sandbox needs a POSIX system (resource limits, sessions).")
    attempt = kernel_layers()
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="lm-edit-sandbox-") as workdir:
        report_r, report_w = os.pipe()
        nonce_r, nonce_w = os.pipe()
        config = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_file_bytes": MAX_FILE_BYTES,
            "workdir": workdir,
            "namespaces": attempt["namespaces"],
            "seccomp": attempt["seccomp"],
            "layers": LAYERS,
            "status_fd": report_w,
            "nonce_fd": nonce_r,
        }
        start = time.monotonic()
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", _BOOT, json.dumps(config)],
                cwd=workdir,
                env=_environment(workdir),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(report_w, nonce_r),
                start_new_session=True,
            )
        finally:
            os.close(report_w)
            os.close(nonce_r)
        os.write(nonce_w, nonce.encode())
        os.close(nonce_w)
        try:
            process.stdin.write(program.encode("utf-8"))
            process.stdin.close()
        except BrokenPipeError:
            pass
        reader = _Reader(process.stderr.fileno(), report_r)
        try:
            ending = reader.read(start + timeout_s)
            if ending == "eof":
                try:
                    process.wait(max(0.0, start + timeout_s - time.monotonic()))
                except subprocess.TimeoutExpired:
                    ending = "deadline"
            _kill_group(process.pid)  # anything left in the group outside a namespace
            process.wait()
        finally:
            process.stderr.close()
            os.close(report_r)
        report = reader.data[report_r].decode("utf-8", "replace").splitlines()
        stderr = reader.data[reader.stderr].decode("utf-8", "replace")
        layers = _layers(report)
        if ending == "deadline":
            return ExecutionResult("timeout", f"no exit within {timeout_s:g} s", layers)
        if ending == "cap":
            return ExecutionResult("output", f"over {STDERR_CAP_BYTES} bytes on stderr", layers)
        return _judge(process.returncode, stderr, report, nonce, layers)
