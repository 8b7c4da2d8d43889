"""lm-edit report on a synthetic sweep folder: the tables hold the expected numbers, the
leaderboard ranks by capability retained, and the HTML page embeds its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_edit.studies.report.build import write_report
from lm_edit.studies.report.leaderboard import leaderboard
from lm_edit.studies.report.load import load_sweeps, metric_stderrs, numeric_metrics
from lm_edit.studies.report.plots import edit_curve_metrics
from lm_edit.studies.report.tables import damage_table, edit_success_tables, edit_table

# (editor, n_edits): (cap_a acc, cap_b exact_match, reliability, individual reliability)
SCORES = {
    ("unedited", 0): (0.50, 0.40, 0.10, None),
    ("rome", 1): (0.50, 0.40, 1.00, 1.00),
    ("rome", 10): (0.25, 0.20, 0.60, 0.90),
    ("memit", 1): (0.50, 0.40, 1.00, 1.00),
    ("memit", 10): (0.45, 0.40, 0.80, 0.95),
}


def _results(
    a: float, b: float, rel: float, individual: float | None, capability: bool = True
) -> dict:
    edit = {"alias": "zsre_edit", "sample_len": 9, "reliability_tf_em,none": rel}
    edit["reliability_tf_em_stderr,none"] = "N/A"
    if individual is not None:
        edit["reliability_tf_em_individual,none"] = individual
    results = {
        "cap_a": {"alias": "cap_a", "acc,none": a, "acc_stderr,none": 0.01},
        "cap_b": {"alias": "cap_b", "exact_match,strict": b},
        "zsre_edit": edit,
    }
    if not capability:
        results = {"zsre_edit": edit}
    return {"results": results, "group_subtasks": {task: [] for task in results}}


def make_sweep(root: Path, scores: dict | None = None, capability: bool = True) -> Path:
    """A sweep folder as `lm-edit sweep` writes it, with the numbers of ``scores``
    (default SCORES); ``capability=False`` leaves the capability tasks out."""
    checkpoints = {}
    for (editor, n), values in (scores or SCORES).items():
        folder = "unedited" if editor == "unedited" else f"{editor}/edits_{n:04d}"
        (root / folder).mkdir(parents=True)
        results = _results(*values, capability=capability)
        matrix = {"parameter": "model.layers.5.mlp.down_proj.weight", "layer": 5}
        results["lm_edit_sweep"] = {
            "drift_per_matrix": [
                {**matrix, "pearson_r": 1 - n / 100, "relative_frobenius": n / 100}
            ]
        }
        (root / folder / "results.json").write_text(json.dumps(results))
        checkpoints[f"{editor}/{n}"] = {
            "editor": editor,
            "n_edits": n,
            "results": f"{folder}/results.json",
            "drift": {"pearson_r": 1 - n / 100 if n else None, "relative_frobenius": n / 100},
            "perplexity": {"ppl": 3.0, "distinct_2": 0.9, "adjusted_ppl": 3.0 / 0.9 + n},
            "edit_seconds_total": 2.0 * n,
            "peak_memory_bytes": 2**30,
        }
    (root / "manifest.json").write_text(json.dumps({"checkpoints": checkpoints}))
    return root


def _row(table, editor: str, n: int) -> list:
    return next(r for r in table.rows if r[0] == editor and r[1] == n)


def test_damage_and_edit_tables(tmp_path):
    rows = load_sweeps([make_sweep(tmp_path / "s1")])
    damage = damage_table(rows)
    assert damage.header == [
        "editor",
        "#edits",
        "cap_a (acc)",
        "cap_b (exact_match,strict)",
        "average",
    ]
    assert _row(damage, "rome", 10)[2:] == pytest.approx([25.0, 20.0, 22.5])
    assert _row(damage, "unedited", 0)[2:] == pytest.approx([50.0, 40.0, 45.0])
    edits = edit_table(rows)
    assert edits.header[2:] == [
        "zsre_edit reliability_tf_em",
        "zsre_edit reliability_tf_em_individual",
    ]
    assert _row(edits, "rome", 10)[2:] == pytest.approx([60.0, 90.0])
    assert _row(edits, "unedited", 0)[3] is None
    (success,) = edit_success_tables(rows)
    assert success.title == "Edit success on zsre_edit (%)"
    assert success.header == ["editor", "#edits", "reliability", "reliability (individual)"]
    assert _row(success, "memit", 10)[2:] == pytest.approx([80.0, 95.0])
    assert "reliability: `reliability_tf_em`" in success.note


def test_leaderboard_ranks_by_capability_retained(tmp_path):
    rows = load_sweeps([make_sweep(tmp_path / "s1")])
    board = leaderboard(rows)
    assert "at 10 edits" in board.title
    assert [r[1] for r in board.rows] == ["unedited", "memit", "rome"]
    assert [r[0] for r in board.rows] == ["-", "1", "2"]
    unedited, memit, rome = board.rows
    assert unedited[3] == pytest.approx(100.0)
    assert memit[3] == pytest.approx(100 * (0.45 / 0.5 + 1.0) / 2)
    assert rome[3] == pytest.approx(50.0)
    assert rome[5] == pytest.approx(60.0)
    at_one = leaderboard(rows, at=1)
    assert [r[3] for r in at_one.rows] == pytest.approx([100.0, 100.0, 100.0])


def test_without_capability_tasks_the_leaderboard_ranks_by_edit_success(tmp_path):
    scores = {
        ("unedited", 0): (0, 0, 0.10, None),
        ("weak", 10): (0, 0, 0.15, 0.15),
        ("strong", 10): (0, 0, 0.90, 0.95),
        ("middle", 10): (0, 0, 0.50, 0.60),
    }
    board = leaderboard(load_sweeps([make_sweep(tmp_path / "s", scores, capability=False)]))
    assert [r[1] for r in board.rows] == ["unedited", "strong", "middle", "weak"]
    assert [r[5] for r in board.rows] == pytest.approx([10.0, 90.0, 50.0, 15.0])


def test_two_sweeps_keep_editors_apart(tmp_path):
    rows = load_sweeps([make_sweep(tmp_path / "a"), make_sweep(tmp_path / "b")])
    editors = {r.editor for r in rows}
    assert {"rome (a)", "rome (b)", "unedited (a)", "unedited (b)"} <= editors
    assert len(leaderboard(rows).rows) == 6


def test_report_files(tmp_path):
    sweep = make_sweep(tmp_path / "s1")
    written = write_report([sweep], tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == [
        "damage_curves.png",
        "drift_by_matrix.png",
        "drift_curves.png",
        "edit_curves.png",
        "report.html",
        "report.md",
    ]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| rome | 10 | 25.0 | 20.0 | 22.5 |" in markdown
    assert "![drift_curves](drift_curves.png)" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "<td>22.5</td>" in page
    for png in tmp_path.glob("report/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_edit_curves_draw_headline_metrics_only(tmp_path):
    rows = load_sweeps([make_sweep(tmp_path / "s1")])
    for row in rows:
        scores = row.scores["zsre_edit"]
        scores["reliability_tf_token_acc"] = scores["reliability_tf_em"]
        scores["locality_gen_unedited"] = 0.9
        scores["locality_gen"] = 0.5
    assert edit_curve_metrics(rows) == [
        ("zsre_edit", "reliability_tf_em"),
        ("zsre_edit", "reliability_tf_em_individual"),
        ("zsre_edit", "locality_gen_unedited"),
    ]


def test_missing_manifest_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="lm-edit sweep"):
        load_sweeps([tmp_path])


def test_standard_errors_are_named_like_their_metrics():
    results = {
        "acc,none": 0.5,
        "acc_stderr,none": 0.05,
        "exact_match,get-answer": 0.2,
        "exact_match_stderr,get-answer": 0.04,
        "f1,none": 0.3,
        "f1_stderr,none": "N/A",
        "alias": "task",
    }
    assert numeric_metrics(results, None) == {"acc": 0.5, "exact_match,get-answer": 0.2, "f1": 0.3}
    assert metric_stderrs(results) == {"acc": 0.05, "exact_match,get-answer": 0.04}


def test_a_group_without_its_own_score_stands_for_its_scored_subtasks():
    from lm_edit.studies.report.load import top_level_tasks

    results = {
        "results": {
            "zsre_edit": {"reliability_tf,none": 1.0},
            "mmlu": {"acc,none": 0.21},
            "mmlu_stem": {"acc,none": 0.2},
            "edit_capability_lite_mmlu": {"alias": "edit_capability_lite_mmlu"},
        },
        "group_subtasks": {"edit_capability_lite_mmlu": ["mmlu"], "mmlu": ["mmlu_stem"]},
    }
    assert top_level_tasks(results) == ["zsre_edit", "mmlu"]


def test_drift_lines_name_the_matrix_not_only_its_layer():
    from lm_edit.studies.report.plots import _matrix_label

    assert _matrix_label("model.layers.3.self_attn.q_proj.weight", 3) == "layer 3 q_proj"
    assert _matrix_label("model.layers.3.self_attn.v_proj.weight", 3) == "layer 3 v_proj"
    assert _matrix_label("transformer.wte.weight", None) == "transformer.wte.weight"


def test_rows_order_the_numbers_in_editor_names_by_value(tmp_path):
    names = ["grace-eps=10", "grace-eps=3", "grace-eps=0.5"]
    scores = {("unedited", 0): SCORES[("unedited", 0)]}
    scores |= {(name, 1): SCORES[("rome", 1)] for name in names}
    rows = load_sweeps([make_sweep(tmp_path / "s", scores)])
    assert [r.editor for r in rows] == ["unedited", "grace-eps=0.5", "grace-eps=3", "grace-eps=10"]
