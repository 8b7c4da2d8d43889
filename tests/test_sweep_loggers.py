"""The sweep's W&B logging: one run per editor named after it, the number of edits as the
step, the unedited results as step 0 of every editor's run, a clear error without wandb."""

from __future__ import annotations

import sys
import types

import pytest


class FakeRun:
    def __init__(self, log: list) -> None:
        self.log = log

    def finish(self) -> None:
        self.log.append(("finish",))


class FakeWandbLogger:
    """Records what lm-eval's WandbLogger would send, in order."""

    events: list = []

    def __init__(self, init_args, config_args) -> None:
        self.step = init_args.get("step")
        self.events.append(("init", init_args["name"], init_args["group"], config_args))
        self.run = FakeRun(self.events)

    def post_init(self, results) -> None:
        self.results = results

    def log_eval_result(self) -> None:
        self.events.append(("log", self.step, self.results["results"]["t"]["acc"]))

    def log_eval_samples(self, samples) -> None:
        self.events.append(("samples", self.step, sorted(samples)))


@pytest.fixture
def fake_wandb(monkeypatch):
    import lm_eval.loggers

    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))
    monkeypatch.setattr(lm_eval.loggers, "WandbLogger", FakeWandbLogger)
    FakeWandbLogger.events = []
    return FakeWandbLogger.events


def _results(acc: float, samples: bool = False) -> dict:
    out = {"results": {"t": {"acc": acc}}}
    if samples:
        out["samples"] = {"t": [{"doc_id": 0}]}
    return out


def test_one_run_per_editor_with_edits_as_steps(fake_wandb):
    from lm_edit.studies.sweep.loggers import WandbSweepLogger

    wandb = WandbSweepLogger({"project": "p", "name": "study"}, {"model": "m"})
    wandb("unedited", 0, _results(0.9))
    wandb("rome", 1, _results(0.8, samples=True))
    wandb("rome", 10, _results(0.5))
    wandb("memit", 1, _results(0.85))
    wandb.close()
    assert fake_wandb == [
        ("init", "study-rome", "study", {"model": "m", "editor": "rome"}),
        ("log", 0, 0.9),
        ("log", 1, 0.8),
        ("samples", 1, ["t"]),
        ("log", 10, 0.5),
        ("finish",),
        ("init", "study-memit", "study", {"model": "m", "editor": "memit"}),
        ("log", 0, 0.9),
        ("log", 1, 0.85),
        ("finish",),
    ]


def test_cli_wires_wandb_args_into_the_sweep(fake_wandb, monkeypatch, tmp_path):
    import lm_edit.studies.sweep.runner as runner
    from lm_edit.cli import main

    def fake_sweep(config, *args, log_results=None, **kwargs):
        log_results("unedited", 0, _results(0.7))
        log_results("rome", 1, _results(0.6))
        return None, [("rome", 1, "evaluated")]

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    argv = ["sweep", "--model_args", "pretrained=x", "--editors", "rome", "--checkpoints", "1"]
    argv += ["--tasks", "t", "--output_path", str(tmp_path / "out")]
    argv += ["--wandb_args", "project=p", "--wandb_config_args", "seed=3"]
    assert main(argv) == 0
    assert fake_wandb[0] == ("init", "rome", "lm-edit-sweep", {"seed": 3, "editor": "rome"})
    assert fake_wandb[1:] == [("log", 0, 0.7), ("log", 1, 0.6), ("finish",)]


def test_missing_wandb_names_the_install(monkeypatch):
    from lm_edit.studies.sweep.loggers import WandbSweepLogger

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(SystemExit, match="pip install 'wandb"):
        WandbSweepLogger({"project": "p"})
