"""Run untrusted generated code in an isolated, limited process.

On Linux each program runs in new user, network, PID, IPC, UTS and mount namespaces: no
network (a down loopback only), a private ``/proc`` that shows only the sandbox's own
processes, a minimal root of read-only system libraries and the Python installation (no
home directories, no project or results folders, no host ``/tmp``), and a writable,
size-limited ``/sandbox`` that disappears with it. A seccomp filter forbids ``execve``,
``ptrace``, mounts, new namespaces, BPF, keyrings and non-Unix sockets; capabilities are
dropped; resource limits bound CPU time, memory, file size and the number of processes;
the program's PID namespace is torn down when it ends or times out, so nothing it started
survives; the parent reads at most a fixed number of bytes of its output.

A program passes only when it exits with 0 after its last statement ran: the harness
writes a nonce, chosen by the parent and read only after the program's code has run, to a
report pipe. ``sys.exit(0)``, ``os._exit(0)`` or ``unittest.main()`` before the asserts
therefore fail. Residual risk: the program runs in the harness's interpreter, so code
written to forge the marker (reading the nonce pipe itself and writing to the report pipe)
can; that is an escape attempt, which the kernel layers contain but scoring cannot detect.

Layers the machine lacks (no user namespaces, no libseccomp, not Linux) are skipped, named
in one log line by :func:`isolation_report`, and recorded in every
:class:`ExecutionResult`; the resource limits and a Python-level guard (sockets, process
spawning and file deletion raise) remain, and they are no security boundary. Without the
namespaces, run untrusted models' code only on machines you can afford to lose, as
lm-eval's ``--confirm_run_unsafe_code`` warns.
"""

from lm_edit.studies.capability.sandbox.report import IsolationReport, isolation_report
from lm_edit.studies.capability.sandbox.runner import LAYERS, ExecutionResult, run_program

__all__ = ["LAYERS", "ExecutionResult", "IsolationReport", "isolation_report", "run_program"]
