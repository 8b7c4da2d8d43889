"""The sandbox's side: set up the layers, run the program, report completion.

Started as ``python -I -S -B`` by :mod:`lm_edit.studies.capability.sandbox.runner`, with a
JSON configuration as its argument, the program on stdin, a pipe to read the completion
nonce from and a pipe to report on. Three processes on Linux with namespaces:

* the *launcher* enters the new namespaces and waits for
* *init*, PID 1 of the new PID namespace, which builds the minimal root and waits for
* the *program* process, which sets resource limits, drops its capabilities, loads the
  seccomp filter and the Python guard, then runs the program in this interpreter (no
  ``execve`` is needed, so the filter can forbid it).

When the program process ends, init exits, and the kernel kills every process left in the
namespace. The launcher's process group is what the parent kills on timeout; init also
dies with the launcher (parent-death signal).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import traceback

from lm_edit.studies.capability.sandbox import guard, isolation, seccomp

PROCESS_LIMIT = 64
"""``RLIMIT_NPROC`` inside the sandbox: processes and threads of the sandbox's user in
its own user namespace (Linux 5.14+ counts per user namespace)."""
NONCE_BYTES = 64


def _status(code: int) -> int:
    if os.WIFSIGNALED(code):
        return 128 + os.WTERMSIG(code)
    return os.WEXITSTATUS(code)


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def _limits(config: dict, layers: dict[str, bool]) -> None:
    cpu = int(config["timeout_s"]) + 1
    memory = config["memory_mb"] * 2**20
    for limit, value in (
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, config["max_file_bytes"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))
    layers["rlimits"] = True
    # The process limit binds only in a user namespace of its own with a non-root host uid;
    # elsewhere it would count (or, for root, ignore) all of the user's processes.
    if layers["user_namespace"] and _kernel_at_least(5, 14):
        resource.setrlimit(resource.RLIMIT_NPROC, (PROCESS_LIMIT, PROCESS_LIMIT))
        layers["process_limit"] = True


def _drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (``capset(2)``)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _run_program(source: str, config: dict, layers: dict[str, bool]) -> None:
    """Run ``source``, then hand the parent's nonce back; never returns."""
    write, read, status_fd = os.write, os.read, config["status_fd"]
    nonce_fd = config["nonce_fd"]
    write(status_fd, (json.dumps(layers) + "\n").encode())
    path = os.path.join(os.getcwd(), "program.py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source)
    guard.install()
    sys.argv = [path]
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    code = 1
    try:
        exec(compile(source, path, "exec"), namespace)
        # Reached only when every statement, asserts included, has run.
        write(status_fd, read(nonce_fd, NONCE_BYTES) + b"\n")
        code = 0
    except SystemExit as stop:  # sys.exit() or unittest.main() before the end: no nonce
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException as error:  # the traceback starts in the program, not here
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _program_process(source: str, config: dict, layers: dict[str, bool]) -> None:
    _limits(config, layers)
    if layers["user_namespace"]:
        try:
            _drop_capabilities()
            layers["no_capabilities"] = True
        except OSError:
            pass
    if config["seccomp"]:
        try:
            seccomp.install()
            layers["seccomp"] = True
        except OSError:
            pass
    _run_program(source, config, layers)


def _init(source: str, config: dict, layers: dict[str, bool]) -> None:
    """PID 1 of the new namespace: build the root, run the program, reap, exit with its
    status (which makes the kernel kill whatever is left in the namespace)."""
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    sources = {}
    try:
        for path in isolation.bind_sources():
            sources[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        isolation.become_namespace_root()
        isolation.build_root(sources)
        layers["private_filesystem"] = True
    except OSError as error:
        print(f"lm-edit sandbox: no private filesystem ({error})", file=sys.stderr)
        os.chdir(config["workdir"])
    for fd in sources.values():
        os.close(fd)
    isolation.prctl(isolation.PR_SET_DUMPABLE, 0)
    program = os.fork()
    if program == 0:
        _program_process(source, config, layers)
    while True:
        pid, status = os.wait()
        if pid == program:
            os._exit(_status(status))


def main() -> None:
    """Entry point of the sandbox process."""
    config = json.loads(sys.argv[1])
    source = sys.stdin.buffer.read().decode("utf-8", "replace")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    layers = dict.fromkeys(config["layers"], False)
    layers["python_guard"] = True
    if config["namespaces"]:
        try:
            isolation.enter_namespaces()
        except OSError as error:
            print(f"lm-edit sandbox: no namespaces ({error})", file=sys.stderr)
        else:
            for name in ("user", "network", "pid", "ipc", "mount"):
                layers[f"{name}_namespace"] = True
    if not layers["pid_namespace"]:
        os.chdir(config["workdir"])
        _program_process(source, config, layers)
    init = os.fork()
    if init == 0:
        _init(source, config, layers)
    _, status = os.waitpid(init, 0)
    os._exit(_status(status))
