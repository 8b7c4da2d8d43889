"""The report reads the samples a sweep logs: a capability task the unedited model answers
the same way on nearly every item is named as unable to show damage and left out of the
leaderboard's capability retained; every checkpoint's answers are compared with the
unedited model's, item by item."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from lm_edit.studies.report.answers import item_answer, leaf_tasks, read_answers
from lm_edit.studies.report.build import write_report
from lm_edit.studies.report.leaderboard import leaderboard
from lm_edit.studies.report.load import load_sweeps
from lm_edit.studies.report.plots import damage_panels
from lm_edit.studies.report.tables import answers_table, damage_table
from tests.test_report import make_sweep

ITEMS = 20


def _choice_record(doc_id: int, chosen: int) -> dict:
    """A multiple-choice item whose most likely of four choices is ``chosen``."""
    scores = [[str(-1.0 if i == chosen else -3.0 - i), "False"] for i in range(4)]
    return {"doc_id": doc_id, "filter": "none", "filtered_resps": scores}


def _generation_record(doc_id: int, text: str) -> dict:
    return {"doc_id": doc_id, "filter": "strict", "filtered_resps": [f" {text}\n"]}


def _write(folder: Path, task: str, records: list[dict]) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (folder / f"samples_{task}.jsonl").write_text(lines)


def _log(root: Path, folder: str, choices: list[int], texts: list[str]) -> None:
    _write(root / folder, "cap_a", [_choice_record(i, c) for i, c in enumerate(choices)])
    _write(root / folder, "cap_b", [_generation_record(i, t) for i, t in enumerate(texts)])


def _logged(root: Path, scores: dict | None = None) -> Path:
    """The synthetic sweep of ``test_report`` (``scores``, default its SCORES), with
    samples: the unedited model picks choice 0 on 19 of cap_a's 20 items and answers
    cap_b's items variously; ROME at 10 edits changes 5 of cap_a's answers and 10 of
    cap_b's."""
    make_sweep(root, scores)
    unedited_choices = [0] * (ITEMS - 1) + [2]
    unedited_texts = [f"answer {i % 7}" for i in range(ITEMS)]
    for folder in ("unedited", "rome/edits_0001", "memit/edits_0001", "memit/edits_0010"):
        _log(root, folder, unedited_choices, unedited_texts)
    rome_choices = [3] * 5 + unedited_choices[5:]
    rome_texts = ["other"] * 10 + unedited_texts[10:]
    _log(root, "rome/edits_0010", rome_choices, rome_texts)
    return root


@pytest.fixture
def logged_sweep(tmp_path):
    return _logged(tmp_path / "s1")


def test_an_item_answer_is_the_likeliest_choice_or_the_filtered_text():
    assert item_answer(_choice_record(0, 2)) == "choice 2"
    assert item_answer(_generation_record(0, "Paris")) == "Paris"
    assert item_answer({"doc_id": 0, "filtered_resps": "Rome "}) == "Rome"


def test_a_group_is_read_through_its_leaf_tasks(tmp_path):
    groups = {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy", "mmlu_virology"]}
    assert leaf_tasks("mmlu", groups) == ["mmlu_anatomy", "mmlu_virology"]
    assert leaf_tasks("mmlu_anatomy", groups) == ["mmlu_anatomy"]
    _write(tmp_path, "mmlu_anatomy", [_choice_record(0, 1)])
    assert read_answers(tmp_path, leaf_tasks("mmlu", groups)) is None
    _write(tmp_path, "mmlu_virology", [_choice_record(0, 3)])
    answers = read_answers(tmp_path, leaf_tasks("mmlu", groups))
    assert answers == {
        ("mmlu_anatomy", 0, "none"): "choice 1",
        ("mmlu_virology", 0, "none"): "choice 3",
    }


def test_answers_are_compared_with_the_unedited_models(logged_sweep):
    table = answers_table(load_sweeps([logged_sweep]))
    assert table is not None and table.header == ["editor", "#edits", "cap_a", "cap_b"]
    rows = {(r[0], r[1]): r[2:] for r in table.rows}
    assert rows[("unedited", 0)] == pytest.approx([100.0, 100.0])
    assert rows[("rome", 10)] == pytest.approx([75.0, 50.0])
    assert rows[("memit", 10)] == pytest.approx([100.0, 100.0])
    assert "cap_a: answer 'choice 0' to 95% of its items" in table.note


def test_a_constant_answer_task_is_left_out_of_capability_retained(logged_sweep):
    rows = load_sweeps([logged_sweep])
    board = leaderboard(rows)
    by_editor = {r[1]: r for r in board.rows}
    # cap_b alone: ROME 0.20 / 0.40, MEMIT 0.40 / 0.40 (cap_a's halving is not counted)
    assert by_editor["rome"][3] == pytest.approx(50.0)
    assert by_editor["memit"][3] == pytest.approx(100.0)
    assert "leaving out the tasks named next" in board.note and "cap_a: answer" in board.note
    assert "cap_a: answer" in damage_table(rows).note
    report = (logged_sweep.parent / "out").resolve()
    write_report([logged_sweep], report)
    assert "Answers unchanged from the unedited model" in (report / "report.md").read_text()


def test_without_samples_nothing_is_left_out_and_the_check_is_named(tmp_path):
    rows = load_sweeps([make_sweep(tmp_path / "s1")])
    assert answers_table(rows) is None
    board = leaderboard(rows)
    assert "--log_samples" in board.note
    assert {r[1]: r[3] for r in board.rows}["memit"] == pytest.approx(100 * (0.9 + 1.0) / 2)


def test_with_several_sweeps_the_note_names_the_sweep(tmp_path):
    rows = load_sweeps([_logged(tmp_path / "s1"), _logged(tmp_path / "s2")])
    note = leaderboard(rows).note
    assert "cap_a in s1: answer 'choice 0'" in note and "cap_a in s2: answer 'choice 0'" in note


def test_an_archived_sweep_with_gzipped_samples_reports_the_same(logged_sweep, tmp_path):
    archived = tmp_path / "archived"
    shutil.copytree(logged_sweep, archived)
    for path in archived.rglob("samples_*.jsonl"):
        with path.open("rb") as plain, gzip.open(path.with_name(path.name + ".gz"), "wb") as out:
            shutil.copyfileobj(plain, out)
        path.unlink()
    assert not list(archived.rglob("samples_*.jsonl"))
    original = answers_table(load_sweeps([logged_sweep]))
    packed = answers_table(load_sweeps([archived]))
    assert packed is not None and original is not None
    assert packed.rows == original.rows and packed.note == original.note


@pytest.mark.parametrize("packed", [False, True])
def test_a_corrupt_samples_file_is_named(tmp_path, packed):
    _write(tmp_path, "cap_a", [_choice_record(0, 1)])
    path = tmp_path / "samples_cap_a.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    if packed:
        path.with_name(path.name + ".gz").write_bytes(b"not gzip at all")
        path.unlink()
        path = path.with_name(path.name + ".gz")
    with pytest.raises(ValueError, match="unreadable logged samples") as error:
        read_answers(tmp_path, ["cap_a"])
    assert str(path) in str(error.value)


def test_the_damage_curves_draw_the_answers_unchanged(logged_sweep, tmp_path):
    rows = load_sweeps([logged_sweep])
    panels = dict(damage_panels(rows))
    unchanged = panels["cap_a: answers unchanged (%)"]
    by_row = {(r.editor, r.n_edits): unchanged(r) for r in rows}
    assert by_row[("unedited", 0)] == pytest.approx(100.0)
    assert by_row[("rome", 10)] == pytest.approx(75.0)
    assert dict(damage_panels(load_sweeps([make_sweep(tmp_path / "plain")]))).keys() == {
        "cap_a (acc)",
        "cap_b (exact_match,strict)",
        "average over tasks",
    }
