"""Data-parallel runs: every process edits its own copy, and the copies must agree. Two
CPU processes (gloo, ``torchrun`` with ``ACCELERATE_USE_CPU``) end with bit-identical
edited weights and lm-eval's results on the main process equal one process's, for ROME
and MEMIT; a rank whose weights differ stops the run naming the ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm_edit.evaluation import ranks
from tests.conftest import make_tiny_model

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("data_parallel_worker.py")
ROOT = Path(__file__).resolve().parents[1]


class _TwoRanks:
    num_processes = 2


def test_ranks_with_different_weights_stop_the_run(monkeypatch):
    model = make_tiny_model("llama", 50)
    monkeypatch.setattr(
        "accelerate.utils.gather_object", lambda items: [items[0], "0" * len(items[0])]
    )
    with pytest.raises(ranks.RanksDisagreeError, match="rank 0: .* rank 1: 000000000000"):
        ranks.check_ranks_agree(_TwoRanks(), model)


def test_ranks_with_the_same_weights_agree(monkeypatch):
    model = make_tiny_model("llama", 50)
    monkeypatch.setattr("accelerate.utils.gather_object", lambda items: items * 2)
    digest = ranks.check_ranks_agree(_TwoRanks(), model)
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1
    assert ranks.check_ranks_agree(_TwoRanks(), model) != digest
    assert ranks.check_ranks_agree(None, model) is None


def _run(command: list[str], out: Path, env: dict[str, str]) -> list[dict]:
    out.mkdir()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["rome", "memit"])
def test_two_cpu_processes_edit_identically_and_score_as_one(
    editor, tiny_tokenizer, tmp_path, isolated_cache
):
    model_dir = tmp_path / "model"
    make_tiny_model("llama", len(tiny_tokenizer)).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
    }
    args = [str(model_dir), editor]
    single = _run(
        [sys.executable, str(WORKER), args[0], str(tmp_path / "one"), editor], tmp_path / "one", env
    )
    pair = _run(
        [
            str(TORCHRUN),
            "--nproc_per_node",
            "2",
            str(WORKER),
            args[0],
            str(tmp_path / "two"),
            editor,
        ],
        tmp_path / "two",
        env,
    )
    assert [r["processes"] for r in pair] == [2, 2]
    assert pair[0]["digest"] == pair[1]["digest"] == single[0]["digest"]
    assert pair[0]["agreed_digest"] == pair[0]["digest"] and single[0]["agreed_digest"] is None
    # HFLM splits requests between ranks only on GPUs; on CPU every rank scores them all
    # and lm-eval returns the results on the main process only
    assert pair[1]["results"] is None
    assert pair[0]["results"] == single[0]["results"]
