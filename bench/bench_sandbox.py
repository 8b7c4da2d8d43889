"""Measure the code sandbox's per-program cost against the previous implementation.

The previous sandbox (one fresh interpreter with resource limits and a Python guard) is
read from git history (the file ``--baseline-path`` at ``--baseline-rev``, default
``main``) and loaded beside the current one. Both run the same small MBPP-like program,
interleaved, ``--n`` times each; the script prints the median and mean wall clock per
program, the overhead in milliseconds, and the ratio new/old.

Usage: ``python bench/bench_sandbox.py [--n 20] [--baseline-rev <rev>]``.
Measured on a 2-core Linux machine: old 41.5 ms, new 99.1 ms median (+58 ms, ratio 2.4).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm_edit.studies.capability.sandbox import isolation_report, run_program  # noqa: E402

PROGRAM = (
    "import re, math, heapq\nfrom collections import Counter\n"
    "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
    "assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4), (5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13), (17, 15, 14, 13)) == (13, 14)\n"
)


def load_baseline(rev: str, path: str, folder: Path):
    """The previous implementation's ``run_program``, loaded from ``git show rev:path``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True
    ).stdout
    file = folder / "baseline_sandbox.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location("baseline_sandbox", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_sandbox"] = module
    spec.loader.exec_module(module)
    return module.run_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--baseline-rev", default="main")
    parser.add_argument("--baseline-path", default="lm_edit/studies/capability/sandbox.py")
    args = parser.parse_args()
    print(isolation_report().summary)
    with tempfile.TemporaryDirectory() as folder:
        old_run = load_baseline(args.baseline_rev, args.baseline_path, Path(folder))
        timings: dict[str, list[float]] = {"old": [], "new": []}
        for run in (old_run, run_program):  # warm-up
            assert run(PROGRAM).passed
        for _ in range(args.n):
            for name, run in (("old", old_run), ("new", run_program)):
                start = time.perf_counter()
                result = run(PROGRAM)
                timings[name].append((time.perf_counter() - start) * 1000)
                assert result.passed, (name, result)
    for name, values in timings.items():
        print(
            f"{name}: median {statistics.median(values):.1f} ms, "
            f"mean {statistics.mean(values):.1f} ms over {len(values)} programs"
        )
    old, new = statistics.median(timings["old"]), statistics.median(timings["new"])
    print(f"overhead per program: {new - old:+.1f} ms (median), ratio new/old {new / old:.2f}")
    print(f"500 MBPP programs: about {500 * new / 1000:.0f} s (old {500 * old / 1000:.0f} s)")


if __name__ == "__main__":
    main()
