"""Sweep wall time versus running ``lm_eval`` separately per checkpoint.

One ``lm-edit sweep`` (the model loaded once, the edit stream continued from checkpoint to
checkpoint) against what the same study costs without it: one ``lm_eval --model edited-hf``
process for the unedited model plus one per checkpoint, each reloading the model and
re-applying all of that checkpoint's edits from scratch. Both sides are fresh processes,
evaluate the same task and write their results to a temporary folder; the key statistics
cache is shared by both (warm it first), and the v* cache is off (the default).

Usage: ``python bench/bench_sweep.py [--editor memit] [--checkpoints 1,2,4]
[--task zsre_edit] [--edit-data demo]``. Run it under the shared heavy-job lock.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str]) -> float:
    """Run ``command`` (its output to a log in the temp folder); return its wall time."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--editor", default="memit")
    parser.add_argument("--checkpoints", default="1,2,4")
    parser.add_argument("--task", default="zsre_edit")
    parser.add_argument("--edit-data", default="demo")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    checkpoints = [int(k) for k in args.checkpoints.split(",")]
    base = f"pretrained={args.model},edit_data={args.edit_data}"
    with tempfile.TemporaryDirectory() as tmp:
        sweep = timed(
            [
                str(BIN / "lm-edit"),
                "sweep",
                "--model_args",
                base,
                "--editors",
                args.editor,
                "--checkpoints",
                args.checkpoints,
                "--tasks",
                args.task,
                "--output_path",
                f"{tmp}/sweep",
            ]
        )
        separate = []
        for editor, n_edits in [("none", max(checkpoints))] + [
            (args.editor, k) for k in checkpoints
        ]:
            model_args = f"{base},editor={editor},n_edits={n_edits}"
            separate.append(
                timed(
                    [
                        str(BIN / "lm_eval"),
                        "--model",
                        "edited-hf",
                        "--model_args",
                        model_args,
                        "--tasks",
                        args.task,
                        "--device",
                        "cpu",
                        "--output_path",
                        f"{tmp}/separate_{editor}_{n_edits}",
                    ]
                )
            )
    total = sum(separate)
    print(f"{args.editor} on {args.model}, checkpoints {args.checkpoints}, task {args.task}")
    print(f"sweep (one process, incremental edits): {sweep:8.1f} s")
    print(
        f"separate lm_eval runs (unedited + {len(checkpoints)}): {total:8.1f} s "
        f"({', '.join(f'{s:.1f}' for s in separate)})"
    )
    print(f"ratio separate / sweep: {total / sweep:.2f}x")


if __name__ == "__main__":
    main()
