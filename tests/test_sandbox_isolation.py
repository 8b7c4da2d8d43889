"""The code sandbox contains programs written to escape it, and scores only complete runs.

Each escape program *passes* (exits 0 after its last statement) exactly when its escape
worked, so every escape test asserts both that the program did not pass and that the host
is untouched. Where a kernel layer is missing the test does not skip: it checks that
:func:`isolation_report` names the layer as missing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from lm_edit.studies.capability.sandbox import isolation_report, run_program
from lm_edit.studies.capability.sandbox import runner as sandbox_runner

MARKER = "lmedit-escaped"  # a process name (15 characters at most) escapees take
ROOT = Path(__file__).resolve().parents[1]


def _layers_present(*names: str) -> bool:
    """True when every named layer is in force; otherwise assert that the report says so
    truthfully (the caller then returns instead of expecting containment)."""
    report = isolation_report()
    missing = [n for n in names if not report.layers.get(n)]
    for name in missing:
        assert name in report.summary and "MISSING" in report.summary
    return not missing


def _marked_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == MARKER:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def no_escapees():
    """Fails the test if a process marked by the program is still alive afterwards, and
    kills any such process so that no test leaves one behind."""
    yield
    time.sleep(0.5)
    alive = _marked_processes()
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"processes started by the program survived it: {alive}"


_NAME_SELF = textwrap.indent(
    f"import ctypes\nctypes.CDLL(None).prctl(15, {MARKER.encode()!r}, 0, 0, 0)\n", " " * 8
)  # PR_SET_NAME, at the indentation of a forked child's branch below

SHELL = {
    "posix.system": "import posix\nassert posix.system({cmd!r}) == 0\n",
    "os.posix_spawn": (
        "import os\npid = os.posix_spawn('/bin/sh', ['sh', '-c', {cmd!r}], {{}})\n"
        "assert os.waitpid(pid, 0)[1] == 0\n"
    ),
    "ctypes.system": "import ctypes\nassert ctypes.CDLL(None).system({cmd!r}.encode()) == 0\n",
    "subprocess reload": (
        "import importlib, subprocess\nimportlib.reload(subprocess)\n"
        "subprocess.run(['sh', '-c', {cmd!r}], check=True)\n"
    ),
}


@pytest.mark.parametrize("way", SHELL)
def test_no_shell_commands(way, tmp_path):
    canary = tmp_path / "shell-canary"
    # the command succeeds whenever a shell runs, even where the canary's folder is hidden
    program = SHELL[way].format(cmd=f"touch {canary} 2>/dev/null; true")
    result = run_program(program, timeout_s=10)
    assert not canary.exists()
    if _layers_present("seccomp"):
        assert not result.passed, f"a shell ran via {way}"


@pytest.mark.parametrize(
    "attack",
    ["import posix\nposix.unlink({path!r})\n", "open({path!r}, 'w').close()\n"],
    ids=["delete", "truncate"],
)
def test_no_writes_outside_the_sandbox(attack, tmp_path):
    canary = tmp_path / "keep.txt"
    canary.write_text("precious")
    result = run_program(attack.format(path=str(canary)), timeout_s=10)
    assert canary.read_text() == "precious"
    assert not result.passed


def test_no_reading_host_files_by_absolute_path(tmp_path):
    canary = tmp_path / "secret.txt"
    canary.write_text("the-secret-text")
    program = (
        f"text = open({str(canary)!r}).read()\nprint(text)\n"
        "assert text[::-1] == 'txet-terces-eht'\n"
    )
    result = run_program(program, timeout_s=10)
    if _layers_present("private_filesystem"):
        assert not result.passed
        assert "the-secret-text" not in result.detail


def test_no_reading_the_parents_environment():
    secret = "lm-edit-canary-" + os.urandom(8).hex()
    program = (
        "import glob, os\nseen = b''\n"
        "for path in [f'/proc/{os.getppid()}/environ', *glob.glob('/proc/*/environ')]:\n"
        "    try:\n        seen += open(path, 'rb').read()\n    except OSError:\n        pass\n"
        f"assert {secret!r}.encode() in seen\n"
    )
    script = (
        "import sys; from lm_edit.studies.capability.sandbox import run_program\n"
        "print(run_program(sys.stdin.read(), timeout_s=10).status)\n"
    )
    env = {**os.environ, "LM_EDIT_TEST_SECRET": secret, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], input=program, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    if _layers_present("pid_namespace"):
        assert done.stdout.strip() != "passed"


def test_no_sockets_even_through_the_low_level_module():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        program = (
            "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
            f"s.settimeout(2)\ns.connect(('127.0.0.1', {port}))\n"
        )
        result = run_program(program, timeout_s=10)
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()[0].close()
    assert not result.passed


def test_no_signals_to_the_parent():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda *_: received.append(True))
    try:
        program = (
            "import posix, signal\n"
            f"for pid in (posix.getppid(), {os.getpid()}):\n"
            "    try:\n        posix.kill(pid, signal.SIGTERM)\n    except OSError:\n        pass\n"
        )
        run_program(program, timeout_s=10)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not received, "the program signalled the evaluation process"


def test_fork_bomb_is_bounded(no_escapees):
    program = (
        "import posix, time\nforked = 0\nfor _ in range(300):\n"
        "    try:\n        pid = posix.fork()\n    except OSError:\n        break\n"
        f"    if pid == 0:\n{_NAME_SELF}"
        "        time.sleep(20)\n        posix._exit(0)\n    forked += 1\n"
        "assert forked == 300, forked\n"
    )
    start = time.monotonic()
    result = run_program(program, timeout_s=10)
    assert time.monotonic() - start < 12
    if _layers_present("process_limit"):
        assert not result.passed, "300 processes were created"


def test_exponential_fork_bomb_ends_in_time(no_escapees):
    """A real fork bomb; only run where the process limit is known to be in force."""
    if not _layers_present("process_limit", "pid_namespace"):
        return
    program = (
        "import posix\nwhile True:\n    try:\n        posix.fork()\n"
        "    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    result = run_program(program, timeout_s=3)
    assert result.status == "timeout" and time.monotonic() - start < 5


def test_no_process_survives_the_program(no_escapees):
    program = (
        "import posix, time\nif posix.fork() == 0:\n    posix.setsid()\n"
        f"    if posix.fork() == 0:\n{_NAME_SELF}"
        "        time.sleep(30)\n    posix._exit(0)\ntime.sleep(0.5)\n"
    )
    run_program(program, timeout_s=10)
    if not _layers_present("pid_namespace"):
        for pid in _marked_processes():
            os.kill(pid, signal.SIGKILL)


def test_stderr_is_capped():
    program = (
        "import sys\nchunk = 'x' * 65536\nfor _ in range(1024):\n    sys.stderr.write(chunk)\n"
        "sys.stderr.write('END-OF-OUTPUT')\nsys.exit(1)\n"
    )
    tracemalloc.start()
    try:
        result = run_program(program, timeout_s=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == "output"
    assert "END-OF-OUTPUT" not in result.detail
    assert peak < 16 * 2**20, f"the parent held {peak / 2**20:.0f} MiB of output"


ADD = "def add(a, b):\n    return a + b\n"
ASSERTS = "assert add(1, 2) == 3\nassert add(2, 2) == 5\n"  # the second fails


@pytest.mark.parametrize(
    "early_exit",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "raise SystemExit\n",
        "import unittest\nunittest.main()\n",
    ],
    ids=["sys.exit", "os._exit", "SystemExit", "unittest.main"],
)
def test_exit_before_the_asserts_fails(early_exit):
    result = run_program(ADD + early_exit + ASSERTS, timeout_s=10)
    assert result.status == "failed", result


@pytest.mark.parametrize(
    ("program", "status"),
    [
        (ADD + "assert add(1, 2) == 3\n", "passed"),
        (ADD + ASSERTS, "failed"),
        (ADD + "while True:\n    pass\n", "timeout"),
    ],
    ids=["correct", "wrong", "endless"],
)
def test_scoring(program, status):
    assert run_program(program, timeout_s=3).status == status


def test_reported_layers_match_what_the_program_sees():
    program = (
        "import json, os, sys\nstatus = open('/proc/self/status').read()\n"
        "seen = {\n"
        "    'seccomp': 'Seccomp:\\t2' in status,\n"
        "    'pid_namespace': sorted(p for p in os.listdir('/proc') if p.isdigit())"
        " == ['1', '2'],\n"
        "    'network_namespace': [l.split(':')[0].strip() for l in open('/proc/net/dev')"
        ".readlines()[2:]] == ['lo'],\n"
        "    'private_filesystem': not os.path.exists(" + repr(str(ROOT)) + "),\n"
        "    'no_capabilities': 'CapEff:\\t0000000000000000' in status,\n"
        "}\nsys.stderr.write('SEEN' + json.dumps(seen))\nsys.exit(1)\n"
    )
    result = run_program(program, timeout_s=10)
    seen = json.loads(result.detail.split("SEEN", 1)[1])
    for layer, observed in seen.items():
        assert observed == result.layers[layer], layer
    assert result.layers == isolation_report().layers


def test_missing_layers_are_reported_not_claimed(monkeypatch):
    monkeypatch.setattr(
        sandbox_runner, "kernel_layers", lambda: {"namespaces": False, "seccomp": False}
    )
    result = run_program("import os\nassert os.getpid() != 2\n", timeout_s=10)
    assert result.passed  # the program really ran outside a PID namespace
    for layer in ("user_namespace", "pid_namespace", "private_filesystem", "seccomp"):
        assert result.layers[layer] is False
    assert result.layers["rlimits"] and result.layers["python_guard"]
    summary = sandbox_runner_summary(result.layers)
    assert "MISSING" in summary and "seccomp" in summary and "pid_namespace" in summary


def sandbox_runner_summary(layers: dict[str, bool]) -> str:
    from lm_edit.studies.capability.sandbox.report import summarize

    return summarize(layers)
