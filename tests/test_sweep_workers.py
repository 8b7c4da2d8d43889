"""One sweep split over worker processes gives the manifest and results of one process;
a killed worker's editor is taken over by a later run; the unedited checkpoint is
evaluated once; ``lm-edit report`` reads the merged folder.

The workers are real processes (spawned, or submitit jobs on the local machine) running
the real loop, claims and manifest code with the stand-in model and evaluation of
:mod:`tests.sweep_stand_ins`, so each sweep takes seconds."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from lm_edit.studies.sweep.claims import claim
from lm_edit.studies.sweep.cluster import executor_parameters, submitit_start
from lm_edit.studies.sweep.lock import sweep_folder_lock
from lm_edit.studies.sweep.manifest import MANIFEST, SweepFolderError
from lm_edit.studies.sweep.runner import SweepConfig, checkpoint_outcomes, run_sweep
from lm_edit.studies.sweep.workers import WorkersOutcome, local_workers, run_workers, unfinished
from tests.sweep_stand_ins import StandInTasks, evaluate, load
from tests.test_sweep import tiny_setup  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = {"edit_seconds_total", "edit_seconds_step", "eval_seconds", "peak_memory_bytes"}


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes import lm_edit and tests.sweep_stand_ins from this checkout."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """This process computes with one thread as the workers do: float sums split over
    another number of threads differ in their last bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _config(out: Path, **changes: Any) -> SweepConfig:
    base: dict[str, Any] = {
        "model_args": {"pretrained": "x"},
        "editors": ["rome", "memit", "ft-l"],
        "checkpoints": [1, 2, 3],
        "tasks": ["cap_a", "zsre_edit"],
        "output_path": out,
        "device": "cpu",
        "log_samples": True,
    }
    return SweepConfig(**{**base, **changes})


def _one_process(out: Path, **changes: Any) -> list[tuple[str, int, str]]:
    return run_sweep(_config(out, **changes), StandInTasks(), evaluate=evaluate, load=load)[1]


def _workers(out: Path, start: Any, **changes: Any) -> WorkersOutcome:
    config = _config(out, **changes)
    return run_workers(config, start, evaluate=evaluate, load=load, task_manager=StandInTasks())


def _evaluations(log: Path) -> list[tuple[str, str]]:
    """(pid, checkpoint) per evaluation logged by the stand-in."""
    return [tuple(line.split()) for line in log.read_text().splitlines()]


def _identity(folder: Path) -> dict[str, Any]:
    """The manifest without timestamps, versions and timings."""
    manifest = json.loads((folder / MANIFEST).read_text())
    kept = {k: manifest[k] for k in ("format", "fingerprint", "arguments", "editor_arguments")}
    kept["checkpoints"] = {
        key: {k: v for k, v in entry.items() if k not in TIMINGS}
        for key, entry in manifest["checkpoints"].items()
    }
    return kept


def _results(folder: Path) -> dict[str, Any]:
    """Per written file: samples as bytes, results JSON without timings."""
    files: dict[str, Any] = {}
    for entry in json.loads((folder / MANIFEST).read_text())["checkpoints"].values():
        for name in entry["files"]:
            if name.endswith(".jsonl"):
                files[name] = (folder / name).read_bytes()
                continue
            results = json.loads((folder / name).read_text())
            extra = results["lm_edit_sweep"]
            results["lm_edit_sweep"] = {k: v for k, v in extra.items() if k not in TIMINGS}
            files[name] = results
    return files


def _sweep_in_one_and_in_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: Any):
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "one.log"))
    _one_process(tmp_path / "one")
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "two.log"))
    monkeypatch.setenv("STAND_IN_BARRIER", "2")
    outcome = _workers(tmp_path / "two", start)
    assert outcome.failures == []
    return outcome


def _assert_same_study(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert _identity(two) == _identity(one)
    assert len(_identity(one)["checkpoints"]) == 1 + 3 * 3
    assert _results(two) == _results(one)
    evaluations = _evaluations(tmp_path / "two.log")
    alone = _evaluations(tmp_path / "one.log")
    assert sorted(c for _, c in evaluations) == sorted(c for _, c in alone)
    assert [c for _, c in evaluations].count("unedited/0") == 1
    assert len({pid for pid, _ in evaluations}) == 2, "both workers evaluated checkpoints"
    assert unfinished(_config(two)) == []


def test_two_local_workers_give_the_study_of_one_process(tmp_path, monkeypatch):
    outcome = _sweep_in_one_and_in_two(tmp_path, monkeypatch, partial(local_workers, n=2))
    _assert_same_study(tmp_path)
    evaluated = sorted((e, k) for e, k, status in outcome.events if status == "evaluated")
    assert len(evaluated) == 10 and len(set(evaluated)) == 10
    assert checkpoint_outcomes(outcome.events) == {"elsewhere": 0, "skipped": 0, "evaluated": 10}
    again = _workers(tmp_path / "two", partial(local_workers, n=2))
    # each worker reports every editor it looked at; a checkpoint still counts once
    assert len(again.events) > 10
    assert checkpoint_outcomes(again.events) == {"elsewhere": 0, "skipped": 10, "evaluated": 0}

    from lm_edit.studies.report.build import write_report

    write_report([tmp_path / "one"], tmp_path / "report_one")
    write_report([tmp_path / "two"], tmp_path / "report_two")
    markdown = (tmp_path / "report_two" / "report.md").read_text()
    alone = (tmp_path / "report_one" / "report.md").read_text()
    assert markdown == alone.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    assert "| ft-l | 3 |" in markdown


def test_a_worker_whose_run_ends_exits_while_another_works(tmp_path, monkeypatch):
    """One editor for two workers: the worker left without one exits at once (handing its
    memory back) instead of idling until the other finishes."""
    log = tmp_path / "evals.log"
    monkeypatch.setenv("STAND_IN_LOG", str(log))
    monkeypatch.setenv("STAND_IN_OUTLIVE", "rome/2")
    outcome = _workers(tmp_path / "sweep", partial(local_workers, n=2), editors=["rome"])
    assert outcome.failures == []
    assert [key for _, key in _evaluations(log)] == [
        "unedited/0",
        "rome/1",
        "alone",
        "rome/2",
        "rome/3",
    ]


def test_submitit_jobs_give_the_study_of_one_process(tmp_path, monkeypatch):
    start = submitit_start({"cluster": "local", "timeout_min": "10"}, 2)
    _sweep_in_one_and_in_two(tmp_path, monkeypatch, start)
    _assert_same_study(tmp_path)
    assert (tmp_path / "two" / ".submitit").is_dir()


def test_a_killed_workers_editor_is_taken_over(tmp_path, monkeypatch):
    out, log = tmp_path / "sweep", tmp_path / "evals.log"
    monkeypatch.setenv("STAND_IN_LOG", str(log))
    monkeypatch.setenv("STAND_IN_DIE_AT", "memit/2")
    outcome = _workers(out, partial(local_workers, n=1), editors=["rome", "memit"])
    assert len(outcome.failures) == 1
    assert unfinished(_config(out, editors=["rome", "memit"])) == ["memit/2", "memit/3"]

    monkeypatch.delenv("STAND_IN_DIE_AT")
    events = _one_process(out, editors=["rome", "memit"])
    assert [(e, k) for e, k, status in events if status == "evaluated"] == [
        ("memit", 2),
        ("memit", 3),
    ]
    checkpoints = [c for _, c in _evaluations(log)]
    assert checkpoints.count("unedited/0") == 1 and checkpoints.count("memit/1") == 1
    assert unfinished(_config(out, editors=["rome", "memit"])) == []


def test_an_editor_another_process_holds_is_left_to_it(tmp_path, monkeypatch):
    out, log = tmp_path / "sweep", tmp_path / "evals.log"
    monkeypatch.setenv("STAND_IN_LOG", str(log))
    out.mkdir()
    with claim(out, "rome") as held:
        assert held
        events = _one_process(out)
    assert {(e, status) for e, _, status in events} == {
        ("rome", "elsewhere"),
        ("memit", "evaluated"),
        ("ft-l", "evaluated"),
    }
    assert unfinished(_config(out)) == ["unedited/0", "rome/1", "rome/2", "rome/3"]
    events = _one_process(out)
    assert sorted((e, k) for e, k, s in events if s == "evaluated") == [
        ("rome", 1),
        ("rome", 2),
        ("rome", 3),
        ("unedited", 0),
    ]
    assert [c for _, c in _evaluations(log)].count("unedited/0") == 1


def test_a_sweep_joins_a_running_one_but_overwrite_and_other_arguments_are_refused(tmp_path):
    out = tmp_path / "sweep"
    _one_process(out, editors=["rome"])
    with sweep_folder_lock(out, shared=True):
        assert {s for *_, s in _one_process(out, editors=["rome"])} == {"skipped"}
        with pytest.raises(SweepFolderError, match=r"Another lm-edit sweep \(pid \d+\)"):
            _one_process(out, editors=["rome"], overwrite=True)
        with pytest.raises(SweepFolderError, match=r"other arguments \(limit: None -> 3.0\)"):
            _one_process(out, editors=["rome"], limit=3.0)
        with pytest.raises(SweepFolderError, match=r"other arguments \(limit: None -> 3.0\)"):
            _workers(out, partial(local_workers, n=2), limit=3.0)


def test_slurm_options_become_submitit_parameters():
    parameters = executor_parameters({"partition": "gpu", "timeout_min": "600"}, "cuda")
    assert parameters == {
        "tasks_per_node": 1,
        "nodes": 1,
        "gpus_per_node": 1,
        "slurm_partition": "gpu",
        "timeout_min": 600,
    }
    assert "gpus_per_node" not in executor_parameters({}, "cpu")


def test_slurm_without_submitit_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    from lm_edit.cli import main

    monkeypatch.setitem(sys.modules, "submitit", None)
    argv = ["sweep", "--model_args", "pretrained=x", "--editors", "rome", "--checkpoints", "1"]
    argv += ["--tasks", "t", "--output_path", str(tmp_path / "out"), "--slurm", "partition=gpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pip install 'lm-edit[cluster]'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_tiny_model_sweep_over_two_workers_matches_one_process(
    tiny_setup,  # noqa: F811  (the fixture of tests/test_sweep.py)
    tmp_path,
    monkeypatch,
    isolated_cache,
):
    from lm_edit.studies.sweep.runner import build_task_manager
    from tests.sweep_stand_ins import load_real_after_peers
    from tests.test_sweep import _config as tiny_config

    model_dir, tasks = tiny_setup
    changes = {"editors": ["rome", "ft-l"], "tasks": ["tiny_facts"], "perplexity": False}
    one = tiny_config(model_dir, tasks, tmp_path / "one", **changes)
    run_sweep(one, build_task_manager(one))
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "two.log"))
    monkeypatch.setenv("STAND_IN_BARRIER", "2")
    two = tiny_config(model_dir, tasks, tmp_path / "two", **changes)
    outcome = run_workers(two, partial(local_workers, n=2), load=load_real_after_peers)
    assert outcome.failures == []
    assert len(set((tmp_path / "two.log.started").read_text().split())) == 2
    assert _identity(tmp_path / "two") == _identity(tmp_path / "one")
    for entry in json.loads((tmp_path / "one" / MANIFEST).read_text())["checkpoints"].values():
        alone = json.loads((tmp_path / "one" / entry["results"]).read_text())
        split = json.loads((tmp_path / "two" / entry["results"]).read_text())
        assert split["results"] == alone["results"]
        sweep_alone, sweep_split = alone["lm_edit_sweep"], split["lm_edit_sweep"]
        assert sweep_split["drift_per_matrix"] == sweep_alone["drift_per_matrix"]
        assert sweep_split["case_ids"] == sweep_alone["case_ids"]
