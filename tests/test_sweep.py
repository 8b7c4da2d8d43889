"""lm-edit sweep on a tiny model: incremental edits equal a fresh run, resume skips
finished work and redoes a half-written checkpoint, and a different sweep is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lm_edit.studies.sweep.manifest import MANIFEST, SweepFolderError
from lm_edit.studies.sweep.runner import SweepConfig, build_task_manager, evaluate_live, run_sweep
from tests.conftest import make_tiny_model

FIXTURE = Path(__file__).parent / "fixtures" / "sweep" / "tiny_facts.jsonl"
ROME_FAST = {
    "v_num_grad_steps": 4,
    "stats_model_samples": 8,
    "stats_max_length": 24,
    "template_spec": [[3, 2]],
    "layers": [1],
}
TASK_YAML = """task: tiny_facts
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, tiny_tokenizer):
    """A saved tiny llama with its tokenizer, a local task and one TaskManager."""
    root = tmp_path_factory.mktemp("sweep")
    model_dir = root / "model"
    make_tiny_model("llama", len(tiny_tokenizer)).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "tiny_facts.yaml").write_text(TASK_YAML.format(data=FIXTURE), encoding="utf-8")
    return model_dir, tasks


def _config(model_dir: Path, task_dir: Path, out: Path, **changes) -> SweepConfig:
    base = {
        "model_args": {"pretrained": str(model_dir), "edit_data": "demo", **ROME_FAST},
        "editors": ["rome"],
        "checkpoints": [2, 10],
        "tasks": ["tiny_facts", "zsre_edit"],
        "output_path": out,
        "device": "cpu",
        "include_path": [str(task_dir)],
        "perplexity": True,
        "ppl_max_new_tokens": 6,
    }
    return SweepConfig(**{**base, **changes})


class Counter:
    """Counts evaluations while running the real one."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, lm, config, task_manager):
        self.calls.append(lm.n_applied)
        return evaluate_live(lm, config, task_manager)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fresh_rome(model_dir: Path, n_edits: int):
    """``edited-hf`` with ROME's fast settings and ``n_edits`` demo edits, outside a sweep."""
    from lm_edit.evaluation.model import EditedLM

    return EditedLM(
        pretrained=str(model_dir),
        device="cpu",
        editor="rome",
        n_edits=n_edits,
        edit_data="demo",
        **ROME_FAST,
    )


@pytest.mark.slow
def test_incremental_equals_fresh_and_resume_skips(tiny_setup, tmp_path, isolated_cache):
    model_dir, tasks = tiny_setup
    config = _config(model_dir, tasks, tmp_path / "sweep")
    manager = build_task_manager(config)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    counter = Counter()

    def keep(editor, n_edits, lm):
        snapshots[n_edits] = _weights(lm.model)

    logged: list[tuple[str, int, set[str]]] = []

    def log(editor, n_edits, results):
        logged.append((editor, n_edits, set(results["results"])))

    state, events = run_sweep(
        config, manager, on_checkpoint=keep, evaluate=counter, log_results=log
    )
    assert counter.calls == [0, 2, 10]
    tasks_seen = {"tiny_facts", "zsre_edit"}
    assert logged == [
        ("unedited", 0, tasks_seen),
        ("rome", 2, tasks_seen),
        ("rome", 10, tasks_seen),
    ]
    assert [e[2] for e in events] == ["evaluated"] * 3

    fresh = _fresh_rome(model_dir, 10)
    assert fresh.n_applied == 10
    expected = _weights(fresh.model)
    assert set(expected) == set(snapshots[10])
    assert all(torch.equal(expected[k], snapshots[10][k]) for k in expected)
    assert not all(torch.equal(expected[k], snapshots[2][k]) for k in expected)

    manifest = json.loads((tmp_path / "sweep" / MANIFEST).read_text())
    entry = manifest["checkpoints"]["rome/10"]
    assert entry["case_ids"] == [r.case_id for r in fresh.planned_requests]
    assert 0 < entry["drift"]["pearson_r"] < 1 and entry["drift"]["relative_frobenius"] > 0
    assert entry["perplexity"]["adjusted_ppl"] >= entry["perplexity"]["ppl"]
    results = json.loads((tmp_path / "sweep" / entry["results"]).read_text())
    assert {"tiny_facts", "zsre_edit"} <= set(results["results"])
    unedited = json.loads((tmp_path / "sweep" / "unedited" / "results.json").read_text())
    assert unedited["lm_edit_sweep"]["case_ids"] == []
    assert "reliability_tf_em,none" in unedited["results"]["zsre_edit"]

    files = sorted((tmp_path / "sweep").rglob("results.json"))
    stamps = [p.stat().st_mtime_ns for p in files]
    again = Counter()
    _, events = run_sweep(config, manager, evaluate=again)
    assert again.calls == [] and {e[2] for e in events} == {"skipped"}
    assert [p.stat().st_mtime_ns for p in files] == stamps

    del manifest["checkpoints"]["rome/10"]
    (tmp_path / "sweep" / MANIFEST).write_text(json.dumps(manifest))
    redo = Counter()
    snapshots.clear()
    run_sweep(config, manager, on_checkpoint=keep, evaluate=redo)
    assert redo.calls == [10]
    assert all(torch.equal(expected[k], snapshots[10][k]) for k in expected)

    from lm_edit.studies.report.build import write_report

    write_report([tmp_path / "sweep"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| tiny_facts (acc) |" in markdown and "| rome | 10 |" in markdown
    assert (tmp_path / "report" / "drift_by_matrix.png").is_file()

    with pytest.raises(SweepFolderError, match="other arguments.*limit"):
        run_sweep(_config(model_dir, tasks, tmp_path / "sweep", limit=2), manager)


def test_a_copied_folder_resumes_without_optimising_earlier_values(
    tiny_setup, tmp_path, monkeypatch
):
    """With cache_values=true the sweep keeps v* in its own folder: a copy of the folder,
    resumed with another lm-edit cache (another machine), optimises only the new edit's
    value and reaches the same weights as a fresh run."""
    import shutil

    from lm_edit.editors.locate import editor as locate_editor
    from lm_edit.studies.sweep.outputs import VALUES

    model_dir, tasks = tiny_setup
    args = {"pretrained": str(model_dir), "edit_data": "demo", **ROME_FAST, "cache_values": True}

    def config(out: Path, checkpoints: list[int]) -> SweepConfig:
        return _config(
            model_dir,
            tasks,
            out,
            model_args=args,
            checkpoints=checkpoints,
            tasks=["tiny_facts"],
            perplexity=False,
        )

    optimised: list[str] = []
    original = locate_editor.optimise_value

    def counting(model, tokenizer, anatomy, layer, request, *rest):
        optimised.append(request.case_id)
        return original(model, tokenizer, anatomy, layer, request, *rest)

    monkeypatch.setattr(locate_editor, "optimise_value", counting)
    monkeypatch.setenv("LM_EDIT_CACHE", str(tmp_path / "cache-a"))
    first = tmp_path / "sweep-a"
    manager = build_task_manager(config(first, [1]))
    run_sweep(config(first, [1]), manager)
    assert len(optimised) == 1
    assert len(list((first / VALUES).glob("*/*.pt"))) == 1
    assert not (tmp_path / "cache-a" / "values").exists()

    copy = tmp_path / "sweep-b"
    shutil.copytree(first, copy)
    monkeypatch.setenv("LM_EDIT_CACHE", str(tmp_path / "cache-b"))
    optimised.clear()
    kept: dict[str, torch.Tensor] = {}
    run_sweep(
        config(copy, [1, 2]),
        manager,
        on_checkpoint=lambda editor, n, lm: kept.update(_weights(lm.model)),
    )
    assert len(optimised) == 1  # edit 2 only; edit 1's value came from the copied folder
    assert len(list((copy / VALUES).glob("*/*.pt"))) == 2

    expected = _weights(_fresh_rome(model_dir, 2).model)
    assert all(torch.equal(expected[k], kept[k]) for k in expected)


@pytest.mark.parametrize("bad_task", ["no_such_task_anywhere", "broken_data"])
def test_a_task_that_cannot_load_fails_before_any_edit(tiny_setup, tmp_path, bad_task):
    from lm_edit.studies.sweep.runner import SweepTaskError

    model_dir, tasks = tiny_setup
    broken = TASK_YAML.format(data=tmp_path / "missing.jsonl").replace("tiny_facts", bad_task)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "broken_data.yaml").write_text(broken, encoding="utf-8")
    config = _config(
        model_dir,
        tasks,
        tmp_path / "sweep",
        tasks=["tiny_facts", bad_task],
        include_path=[str(tasks), str(tmp_path / "tasks")],
    )
    with pytest.raises(SweepTaskError, match=f"{bad_task} could not be built.*capability-data"):
        run_sweep(config, build_task_manager(config))
    manifest = json.loads((tmp_path / "sweep" / MANIFEST).read_text())
    assert manifest["checkpoints"] == {}


def test_reserved_model_args_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--editors"):
        SweepConfig({"pretrained": "x", "editor": "rome"}, ["rome"], [1], ["t"], tmp_path)
    with pytest.raises(ValueError, match=">= 1"):
        SweepConfig({"pretrained": "x"}, ["rome"], [0, 5], ["t"], tmp_path)


def test_metadata_reaches_the_tasks_and_only_a_given_one_is_fingerprinted(tmp_path):
    plain = SweepConfig({"pretrained": "x"}, ["rome"], [1], ["t"], tmp_path)
    assert "metadata" not in plain.fingerprinted()  # earlier sweeps keep their fingerprint
    scored = SweepConfig(
        {"pretrained": "x"}, ["rome"], [1], ["t"], tmp_path, metadata={"score_cases": 5}
    )
    assert scored.fingerprinted()["metadata"] == {"score_cases": 5}
    assert build_task_manager(scored).metadata == {"score_cases": 5}


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path):
    from lm_edit.studies.sweep.manifest import SweepState

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepFolderError, match="not a sweep folder"):
        SweepState.open(tmp_path, {"a": 1})
    state = SweepState.open(tmp_path / "new", {"a": 1})
    assert (tmp_path / "new" / MANIFEST).is_file() and state.checkpoints == {}


def test_interruption_exits_130_and_lists_what_was_saved(tmp_path, monkeypatch, capsys):
    import lm_edit.studies.sweep.runner as runner
    from lm_edit.cli import main
    from lm_edit.studies.sweep.manifest import SweepState

    def interrupted(config, *args, **kwargs):
        state = SweepState.open(config.output_path, config.fingerprinted())
        (tmp_path / "out" / "unedited").mkdir()
        (tmp_path / "out" / "unedited" / "results.json").write_text("{}")
        state.finish("unedited", 0, {"results": "unedited/results.json"})
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_sweep", interrupted)
    argv = ["sweep", "--model_args", "pretrained=x,edit_data=demo", "--editors", "rome"]
    argv += [
        "--checkpoints",
        "1,10",
        "--tasks",
        "zsre_edit",
        "--output_path",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted. 1 checkpoint(s) are saved" in err
    assert "unedited/0" in err and "Re-run the same command to resume" in err


def test_cli_refuses_a_different_sweep(tmp_path, capsys):
    from lm_edit.cli import main
    from lm_edit.studies.sweep.manifest import SweepState

    SweepState.open(tmp_path, {"other": True})
    argv = ["sweep", "--model_args", "pretrained=x", "--editors", "rome", "--checkpoints", "1"]
    argv += ["--tasks", "zsre_edit", "--output_path", str(tmp_path)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_overwrite_discards_the_previous_sweep(tmp_path):
    from lm_edit.studies.sweep.manifest import SweepState

    old = SweepState.open(tmp_path, {"limit": None})
    (tmp_path / "rome" / "edits_0001").mkdir(parents=True)
    (tmp_path / "rome" / "edits_0001" / "results.json").write_text("{}")
    old.finish("rome", 1, {"results": "rome/edits_0001/results.json"})
    assert SweepState.open(tmp_path, {"limit": None}).is_done("rome", 1)
    new = SweepState.open(tmp_path, {"limit": 3}, overwrite=True)
    assert new.checkpoints == {} and not (tmp_path / "rome").exists()
    assert SweepState.open(tmp_path, {"limit": 3}).checkpoints == {}


def test_a_second_sweep_on_a_busy_folder_is_refused(tmp_path):
    from lm_edit.studies.sweep.lock import sweep_folder_lock
    from lm_edit.studies.sweep.manifest import SweepState

    config = SweepConfig({"pretrained": "x"}, ["rome"], [1], ["t"], tmp_path / "busy")
    with sweep_folder_lock(config.output_path):
        with pytest.raises(SweepFolderError, match=r"Another lm-edit sweep \(pid \d+\)"):
            run_sweep(config, task_manager=object())
        assert not (config.output_path / MANIFEST).exists()
    with sweep_folder_lock(config.output_path):
        state = SweepState.open(config.output_path, {"a": 1})
    assert state.checkpoints == {}
