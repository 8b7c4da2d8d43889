"""The leaderboard counts an editor whose capability retained lies within one standard
error of 100% as having kept its capability, and orders such editors by the answers they
left unchanged (when samples are logged), then by edit success; an editor above or below
ranks before or after them. The damage curves draw the unedited model's standard error
beside the scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_edit.studies.report.leaderboard import leaderboard, retained_with_stderr
from lm_edit.studies.report.load import load_sweeps
from lm_edit.studies.report.tables import answers_table
from tests.test_report import SCORES, make_sweep
from tests.test_report_answers import ITEMS, _log, _logged

# ROME at 10 edits scores above MEMIT on cap_b (the task that counts: cap_a's unedited
# answers are constant) but changes half of its answers, MEMIT none.
AHEAD_ON_ACCURACY = {**SCORES, ("rome", 10): (0.25, 0.44, 0.60, 0.90)}


def _set_stderr(root: Path, stderr: float) -> Path:
    """Give every checkpoint's capability scores the standard error ``stderr``."""
    for path in root.rglob("results.json"):
        results = json.loads(path.read_text())
        results["results"]["cap_a"]["acc_stderr,none"] = stderr
        results["results"]["cap_b"]["exact_match_stderr,strict"] = stderr
        path.write_text(json.dumps(results))
    return root


def _order(root: Path) -> list[str]:
    return [row[1] for row in leaderboard(load_sweeps([root])).rows]


def test_within_the_standard_error_fewer_changed_answers_rank_first(tmp_path):
    root = _set_stderr(_logged(tmp_path / "s", AHEAD_ON_ACCURACY), 0.05)
    board = leaderboard(load_sweeps([root]))
    assert [row[1] for row in board.rows] == ["unedited", "memit", "rome"]
    memit, rome = board.rows[1], board.rows[2]
    assert board.header[5] == "answers unchanged (%)"
    assert rome[3] == pytest.approx(110.0) and memit[3] == pytest.approx(100.0)
    assert rome[5] == pytest.approx(62.5) and memit[5] == pytest.approx(100.0)
    assert "Here kept: memit, rome." in board.note


def test_a_chance_rise_does_not_rank_above_an_editor_that_kept_the_answers(tmp_path):
    # ROME 125% and MEMIT 90% of cap_b, each within one standard error of 100% but not
    # of each other: both kept their capability, and MEMIT changed no answer.
    scores = {
        **SCORES,
        ("rome", 10): (0.25, 0.50, 0.60, 0.90),
        ("memit", 10): (0.45, 0.36, 0.80, 0.95),
    }
    root = _set_stderr(_logged(tmp_path / "s", scores), 0.08)
    assert _order(root) == ["unedited", "memit", "rome"]


def test_beyond_the_standard_error_capability_retained_decides(tmp_path):
    root = _set_stderr(_logged(tmp_path / "s", AHEAD_ON_ACCURACY), 0.01)
    assert _order(root) == ["unedited", "rome", "memit"]
    assert "Here gained: rome; kept: memit." in leaderboard(load_sweeps([root])).note
    below = {**SCORES, ("rome", 10): (0.25, 0.30, 0.60, 0.90)}
    root = _set_stderr(_logged(tmp_path / "lost", below), 0.01)
    assert _order(root) == ["unedited", "memit", "rome"]
    assert "Here kept: memit; lost: rome." in leaderboard(load_sweeps([root])).note


def test_without_samples_kept_editors_are_ordered_by_edit_success(tmp_path):
    # retained: ROME (0.90 + 1.10) / 2 = 1.00, MEMIT 0.95, both within a standard error of 1
    scores = {
        **SCORES,
        ("rome", 10): (0.45, 0.44, 0.60, 0.90),
        ("memit", 10): (0.45, 0.40, 0.95, 0.95),
    }
    root = _set_stderr(make_sweep(tmp_path / "s", scores), 0.05)
    board = leaderboard(load_sweeps([root]))
    assert [row[1] for row in board.rows] == ["unedited", "memit", "rome"]
    assert "answers unchanged (%)" not in board.header
    assert "ordered by edit success" in board.note and "Here kept: memit, rome." in board.note


def test_without_a_standard_error_for_every_task_capability_retained_decides(tmp_path):
    # make_sweep reports no stderr for cap_b
    scores = {**SCORES, ("rome", 10): (0.50, 0.42, 0.60, 0.90)}
    assert _order(make_sweep(tmp_path / "s", scores)) == ["unedited", "rome", "memit"]


def test_the_retained_standard_error_counts_both_scores_errors(tmp_path):
    rows = load_sweeps([_set_stderr(make_sweep(tmp_path / "s"), 0.04)])
    by_key = {(r.editor, r.n_edits): r for r in rows}
    metrics = {"cap_a": "acc", "cap_b": "exact_match,strict"}
    retained, stderr = retained_with_stderr(
        by_key[("rome", 10)], by_key[("unedited", 0)], ["cap_a", "cap_b"], metrics
    )
    assert retained == pytest.approx((0.25 / 0.5 + 0.20 / 0.4) / 2)
    variance_a = (0.04 / 0.5) ** 2 + (0.25 * 0.04 / 0.5**2) ** 2
    variance_b = (0.04 / 0.4) ** 2 + (0.20 * 0.04 / 0.4**2) ** 2
    assert stderr == pytest.approx((variance_a + variance_b) ** 0.5 / 2)


def test_the_damage_curves_band_the_unedited_standard_error(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from lm_edit.studies.report.plots import damage_curves

    spans: list[tuple[float, float]] = []
    original = Axes.axhspan

    def record(self, low, high, *args, **kwargs):
        spans.append((low, high))
        return original(self, low, high, *args, **kwargs)

    monkeypatch.setattr(Axes, "axhspan", record)
    rows = load_sweeps([_set_stderr(make_sweep(tmp_path / "s"), 0.05)])
    assert damage_curves(rows, tmp_path / "damage.png").is_file()
    # cap_a (0.50) and cap_b (0.40) each get one band; the average panel none
    assert spans == [pytest.approx((0.45, 0.55)), pytest.approx((0.35, 0.45))]


def test_answers_collapsed_to_one_lose_capability_whatever_the_score(tmp_path):
    # MEMIT at 10 edits keeps its scores (100% retained) but answers every cap_b item
    # the same way, which the unedited model does not.
    root = _set_stderr(_logged(tmp_path / "s"), 0.05)
    _log(root, "memit/edits_0010", [0] * ITEMS, ["same"] * ITEMS)
    rows = load_sweeps([root])
    board = leaderboard(rows)
    # both lost, so ranked by capability retained: MEMIT 100%, ROME 50%
    assert [row[1] for row in board.rows] == ["unedited", "memit", "rome"]
    assert "Here lost: memit (collapsed on cap_b), rome." in board.note
    answers = answers_table(rows)
    assert answers is not None
    assert "memit at 10 edits on cap_b (answer 'same' to 100% of its items)" in answers.note
    assert "on cap_a" not in answers.note.split("Collapsed")[1]
