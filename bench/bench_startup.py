"""Measure what lm-edit's ``.pth`` startup hook adds to an unrelated interpreter start.

Three figures, all from fresh interpreters of the environment running this script:

* wall clock of ``python -c pass`` with the hook active and with ``LM_EDIT_NO_PLUGIN=1``,
  interleaved, median of ``--n`` runs each: the overhead and the on/off ratio;
* the same for a program importing about 150 standard-library modules, since the
  hook's finder is consulted once per import;
* the hook's own cost: the time to execute the installed ``.pth`` line once, measured
  inside interpreters started with the hook disabled (median of ``--n``). This isolates
  the hook from the process start-up noise that dominates the wall-clock difference.

Usage: ``python bench/bench_startup.py [--n 40] [--budget-ms 5]``. Exits with status 1 when
the hook is not installed, 2 when the ``pass`` overhead or the hook's own cost exceeds the
budget.
"""

import argparse
import os
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PTH_NAME = "zz_lm_edit_plugin.pth"
OPT_OUT = "LM_EDIT_NO_PLUGIN"

WORKLOADS = {
    "python -c pass": "pass",
    "python -c 'import <stdlib>'": (
        "import argparse, asyncio, decimal, email.message, http.client, json, logging, unittest"
    ),
}
"""Unrelated programs: an empty one, and one that imports about 150 modules."""

_SELF_TIMING = """
import os, sys, time
os.environ.pop({opt_out!r}, None)
with open({pth!r}) as handle:
    lines = [line for line in handle if line.startswith(("import ", "import\\t"))]
start = time.perf_counter()
for line in lines:
    exec(line)
elapsed = time.perf_counter() - start
hooked = any(hasattr(f, "__lm_edit_plugin_lazy__") for f in sys.meta_path)
print(elapsed, hooked)
"""


def find_pth() -> Path | None:
    """Return the installed startup hook of this environment, or ``None``."""
    for directory in [*site.getsitepackages(), site.getusersitepackages()]:
        candidate = Path(directory) / PTH_NAME
        if candidate.is_file():
            return candidate
    return None


def environment(enabled: bool) -> dict[str, str]:
    """Return the current environment with the hook enabled or disabled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LM_EDIT_")}
    if not enabled:
        env[OPT_OUT] = "1"
    return env


def time_start(code: str, env: dict[str, str], cwd: str) -> float:
    """Return the wall-clock seconds of one ``python -c <code>``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True)
    return time.perf_counter() - start


def compare(code: str, n: int, cwd: str) -> tuple[list[float], list[float]]:
    """Return the milliseconds of ``n`` runs of ``python -c <code>`` with the hook on and off."""
    on_env, off_env = environment(enabled=True), environment(enabled=False)
    for _ in range(3):
        time_start(code, on_env, cwd)
        time_start(code, off_env, cwd)
    on: list[float] = []
    off: list[float] = []
    for i in range(n):
        pair = [(on, on_env), (off, off_env)]
        for samples, env in pair if i % 2 == 0 else reversed(pair):
            samples.append(time_start(code, env, cwd))
    return [t * 1e3 for t in on], [t * 1e3 for t in off]


def hook_self_time(pth: Path, cwd: str) -> float:
    """Return the seconds one execution of the ``.pth`` line takes in a fresh interpreter."""
    code = _SELF_TIMING.format(opt_out=OPT_OUT, pth=str(pth))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=environment(enabled=False),
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed, loaded = proc.stdout.split()
    if loaded != "True":
        raise RuntimeError(f"the .pth line installed no finder: {proc.stderr}")
    return float(elapsed)


def finder_cost_per_import(cwd: str) -> float:
    """Return the microseconds the start-up finder spends on one unrelated import."""
    code = (
        "import sys, timeit\n"
        "finder = next(f for f in sys.meta_path if hasattr(f, '__lm_edit_plugin_lazy__'))\n"
        "n = 200000\n"
        "print(timeit.timeit(lambda: finder.find_spec('email.message', None), number=n) / n)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=environment(enabled=True),
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(proc.stdout) * 1e6


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="repetitions per variant")
    parser.add_argument("--budget-ms", type=float, default=5.0, help="allowed median overhead")
    args = parser.parse_args()

    pth = find_pth()
    if pth is None:
        print(f"{PTH_NAME} is not installed in this environment (pip install -e .)")
        return 1

    with tempfile.TemporaryDirectory() as cwd:
        figures = {label: compare(code, args.n, cwd) for label, code in WORKLOADS.items()}
        self_times = [hook_self_time(pth, cwd) for _ in range(args.n)]
        per_import_us = finder_cost_per_import(cwd)

    print(f"hook: {pth}")
    for label, (on, off) in figures.items():
        on_ms, off_ms = statistics.median(on), statistics.median(off)
        print(
            f"{label}, median of {args.n}: hook on {on_ms:.2f} ms, off {off_ms:.2f} ms, "
            f"overhead {on_ms - off_ms:+.2f} ms (ratio on/off {on_ms / off_ms:.3f}); "
            f"min on {min(on):.2f} ms, off {min(off):.2f} ms"
        )
    print(f"finder cost per unrelated import (in process): {per_import_us:.3f} us")
    self_ms = statistics.median(self_times) * 1e3
    print(
        f"hook's own cost (executing the .pth line), median of {args.n}: {self_ms:.3f} ms "
        f"(min {min(self_times) * 1e3:.3f}, max {max(self_times) * 1e3:.3f})"
    )
    on, off = figures["python -c pass"]
    worst = max(statistics.median(on) - statistics.median(off), self_ms)
    within = worst <= args.budget_ms
    print(f"{'within' if within else 'OVER'} the {args.budget_ms:g} ms budget")
    return 0 if within else 2


if __name__ == "__main__":
    sys.exit(main())
