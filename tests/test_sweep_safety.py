"""A sweep never touches anything outside its folder, --overwrite deletes only what the
previous sweep wrote, and resuming compares the contents of the files the arguments name.

The sweeps here run the real loop, manifest and folder code with a stand-in model (no
weights, no edits) and a stand-in evaluation, so each takes a fraction of a second."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import lm_edit.studies.sweep.runner as runner
from lm_edit.paths import DEMO_EDITS
from lm_edit.studies.sweep.manifest import LOCK_NAME, MANIFEST, SweepFolderError, SweepState
from lm_edit.studies.sweep.runner import SweepConfig, run_sweep


class StandInLM:
    """What the sweep loop reads from an ``edited-hf`` model, without a model."""

    def __init__(self) -> None:
        self.n_applied = 0
        self.model = None
        self.tokenizer = None
        self.edit_stream = SimpleNamespace(records=[])
        self.edit_session = SimpleNamespace(requests=[], config={}, manifest=dict)

    def edit_up_to(self, count: int) -> None:
        self.n_applied = count


class StandInTasks:
    """A task manager whose tasks always load."""

    def load(self, names: list[str]) -> None:
        pass


def evaluate(lm: StandInLM, config: SweepConfig, task_manager: Any) -> dict[str, Any]:
    """Results (and samples) that record how many edits the model had."""
    return {"results": {"t": {"acc": lm.n_applied}}, "samples": {"t": [{"doc_id": 0}]}}


@pytest.fixture(autouse=True)
def stand_in_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "load_model", lambda config, editor: StandInLM())


def _config(out: Path, **changes: Any) -> SweepConfig:
    model_args = {"pretrained": "x", **changes.pop("model_args", {})}
    base = {
        "model_args": model_args,
        "editors": ["rome"],
        "checkpoints": [1, 2],
        "tasks": ["t"],
        "output_path": out,
        "log_samples": True,
    }
    return SweepConfig(**{**base, **changes})


def _sweep(out: Path, **changes: Any) -> list[tuple[str, int, str]]:
    return run_sweep(_config(out, **changes), StandInTasks(), evaluate=evaluate)[1]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


PATH_LIKE = ["../x", "ABSOLUTE", "a/b", "..", "../editors/rome"]


@pytest.mark.parametrize("name", PATH_LIKE)
def test_path_like_editor_names_are_refused_and_write_nothing(tmp_path, name):
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine")
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match=r"--editors: .* is not an editor name; known: .*rome"):
        _sweep(parent / "sweep", editors=["rome", name])
    assert _listing(tmp_path) == before


def test_the_cli_names_the_refused_editor(tmp_path, capsys):
    from lm_edit.cli import main

    argv = ["sweep", "--model_args", "pretrained=x", "--editors", "../editors/rome"]
    argv += ["--checkpoints", "1", "--tasks", "t", "--output_path", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--editors: '../editors/rome' is not an editor name; known: " in err
    assert "memit" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_sweep_writes_only_inside_its_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    before = _listing(tmp_path)
    events = _sweep(tmp_path / "sweep", editors=["rome", "none"])
    assert [e[2] for e in events] == ["evaluated"] * 5
    assert _listing(tmp_path) == sorted([*before, *_prefixed("sweep", tmp_path / "sweep")])
    manifest = json.loads((tmp_path / "sweep" / MANIFEST).read_text())
    assert manifest["checkpoints"]["rome/2"]["files"] == [
        "rome/edits_0002/samples_t.jsonl",
        "rome/edits_0002/results.json",
    ]


def _prefixed(prefix: str, folder: Path) -> list[str]:
    return [prefix, *(f"{prefix}/{name}" for name in _listing(folder))]


def test_overwrite_deletes_only_the_listed_files(tmp_path):
    out = tmp_path / "sweep"
    _sweep(out)
    (out / "notes.txt").write_text("mine")
    (out / "rome" / "mine.txt").write_text("mine")
    (out / "rome" / "edits_0001" / "plot.png").write_text("mine")
    _sweep(out, limit=3.0, checkpoints=[2], overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "rome" / "mine.txt").read_text() == "mine"
    assert _listing(out / "rome" / "edits_0001") == ["plot.png"]
    assert sorted(json.loads((out / MANIFEST).read_text())["checkpoints"]) == [
        "rome/2",
        "unedited/0",
    ]


def test_overwrite_never_follows_a_symlink_out(tmp_path):
    out, outside = tmp_path / "sweep", tmp_path / "outside"
    _sweep(out)
    shutil.move(out / "rome", outside)
    (out / "rome").symlink_to(outside, target_is_directory=True)
    before = _listing(outside)
    with pytest.raises(SweepFolderError, match="outside the sweep folder"):
        _sweep(out, limit=3.0, overwrite=True)
    assert _listing(outside) == before and before


def test_a_symlink_in_the_folder_is_never_written_through(tmp_path):
    out, outside = tmp_path / "sweep", tmp_path / "outside"
    _sweep(out)
    outside.mkdir()
    (out / "none").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SweepFolderError, match="outside the sweep folder"):
        _sweep(out, editors=["rome", "none"])
    assert _listing(outside) == []
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / LOCK_NAME).unlink()
    (out / LOCK_NAME).symlink_to(victim)
    with pytest.raises(SweepFolderError, match="outside the sweep folder"):
        _sweep(out)
    assert victim.read_text() == "keep me"


def _edit_data(folder: Path) -> Path:
    path = folder / "edits.jsonl"
    shutil.copy(DEMO_EDITS, path)
    return path


def _editor_config(folder: Path) -> Path:
    path = folder / "rome.yaml"
    path.write_text("v_lr: 0.4\n")
    return path


def _stats_text(folder: Path) -> Path:
    path = folder / "stats.txt"
    path.write_text("One passage.\n\nAnother passage.\n")
    return path


@pytest.mark.parametrize(
    ("argument", "make", "named"),
    [
        ("edit_data", _edit_data, "edit_data file"),
        ("editor_config", _editor_config, "editor_config file"),
        ("stats_source", _stats_text, "editor rome: stats_source file"),
    ],
)
def test_a_changed_file_is_refused_on_resume(tmp_path, argument, make, named):
    path = make(tmp_path)
    out = tmp_path / "sweep"
    _sweep(out, model_args={argument: str(path)})
    assert {e[2] for e in _sweep(out, model_args={argument: str(path)})} == {"skipped"}
    with path.open("ab") as handle:
        handle.write(b"\n")
    with pytest.raises(SweepFolderError) as error:
        _sweep(out, model_args={argument: str(path)})
    message = str(error.value)
    assert f"{named} {path} changed since the study started (sha256 " in message
    assert "--output_path" in message and "--overwrite" in message


def test_explicit_defaults_are_not_a_change(tmp_path):
    out = tmp_path / "sweep"
    _sweep(out, editors=["rome", "memit"])
    defaults = {"edit_seed": 0, "edit_data": "demo", "v_lr": 0.5, "solver": "equality"}
    same = _sweep(out, editors=["rome"], model_args=defaults, batch_size="1")
    assert {e[2] for e in same} == {"skipped"}
    with pytest.raises(SweepFolderError, match="editor rome: v_lr: None -> 0.4"):
        _sweep(out, editors=["rome"], model_args={"v_lr": 0.4})
    with pytest.raises(SweepFolderError, match="edit_seed: None -> 1"):
        _sweep(out, editors=["rome"], model_args={"edit_seed": 1})


@pytest.mark.parametrize("text", ['{"format": 2, "fingerpr', "", "[1, 2]", "\xff\xfe"])
def test_an_unreadable_manifest_is_named_with_the_fix(tmp_path, text):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / MANIFEST).write_bytes(text.encode("latin-1"))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SweepFolderError, match=rf"{MANIFEST} is not a readable sweep manifest"):
        _sweep(out)
    _sweep(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert SweepState.open(out, _config(out).fingerprinted()).is_done("rome", 2)


def test_the_cli_reports_an_unreadable_manifest(tmp_path, capsys):
    from lm_edit.cli import main

    out = tmp_path / "sweep"
    out.mkdir()
    (out / MANIFEST).write_text('{"checkpoints": {"rome/1": ')
    argv = ["sweep", "--model_args", "pretrained=x", "--editors", "rome", "--checkpoints", "1"]
    argv += ["--tasks", "t", "--output_path", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out / MANIFEST} is not a readable sweep manifest" in err
    assert "--overwrite" in err and "Traceback" not in err


def test_a_hyperparameter_reaches_only_the_editors_that_take_it(tmp_path, monkeypatch):
    """``cache_values`` is ROME's: FT-L's model (which also evaluates the unedited
    checkpoint) is loaded without it."""
    loaded: dict[str, dict[str, Any]] = {}

    def load(config: SweepConfig, editor: str) -> StandInLM:
        loaded[editor] = runner.model_args_for(editor, config.model_args)
        return StandInLM()

    monkeypatch.setattr(runner, "load_model", load)
    config = _config(tmp_path / "s", editors=["ft-l", "rome"], model_args={"cache_values": True})
    run_sweep(config, StandInTasks(), evaluate=evaluate)
    assert "cache_values" not in loaded["ft-l"]
    assert loaded["rome"]["cache_values"] is True


def test_a_hyperparameter_no_editor_of_the_sweep_takes_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"cache_values, which none of the sweep's editors"):
        _config(tmp_path / "s", editors=["ft-l", "lora"], model_args={"cache_values": True})
