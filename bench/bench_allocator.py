"""ROME edits with glibc's default allocator settings against settings that keep freed
memory in the process, in one run (each in a fresh subprocess, same edits, same order).

glibc serves every allocation above 32 MiB with its own ``mmap`` and unmaps it on free,
so each v* step's logits and gradients (hundreds of MiB) are page-faulted and zeroed
again. ``MALLOC_MMAP_MAX_=0`` and a large ``MALLOC_TRIM_THRESHOLD_`` keep that memory
(the Makefile sets both). Prints seconds per edit, page faults and system time per side.

    python bench/bench_allocator.py [--edits 2] [--edit-data demo]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}
ALLOCATOR_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

WORKER = """
import json, resource, sys, time
from transformers import AutoModelForCausalLM, AutoTokenizer
from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream

edits, data = int(sys.argv[1]), sys.argv[2]
folder = converted_model_dir()
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder).eval()
requests = select_requests(load_edit_requests(data), edits + 1, 0)
stream = EditStream.create(model, tokenizer, "rome", seed=0)
stream.apply(requests[:1], batch_size=1, progress=False)
before = resource.getrusage(resource.RUSAGE_SELF)
seconds = []
for request in requests[1:]:
    start = time.perf_counter()
    stream.apply([request], batch_size=1, progress=False)
    seconds.append(time.perf_counter() - start)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": seconds,
    "faults": after.ru_minflt - before.ru_minflt,
    "system_s": after.ru_stime - before.ru_stime,
}))
"""


def run(env: dict[str, str], edits: int, data: str) -> dict:
    """One fresh worker process under ``env``; its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(edits), data],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=2, help="timed edits (after one warm-up)")
    parser.add_argument("--edit-data", default="demo")
    args = parser.parse_args()
    default = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARS}
    sides = {"glibc defaults": default, "memory kept": {**default, **KEEP_MEMORY}}
    results = {name: run(env, args.edits, args.edit_data) for name, env in sides.items()}
    for name, got in results.items():
        per_edit = ", ".join(f"{s:.1f}" for s in got["seconds"])
        print(
            f"{name:15s} edits {per_edit} s (total {sum(got['seconds']):.1f} s), "
            f"{got['faults']:,} page faults, {got['system_s']:.1f} s system time"
        )
    base, kept = (sum(results[n]["seconds"]) for n in sides)
    print(f"ratio defaults / memory kept: {base / kept:.2f}x")


if __name__ == "__main__":
    main()
