"""The unedited-vs-edited capability table, from lm-eval results JSONs."""

from __future__ import annotations

import json

import pytest

from lm_edit.studies.capability.compare import comparison_markdown, load_scores


def _write(folder, stamp: str, results: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps({"results": results}), encoding="utf-8")


def test_table_sets_states_side_by_side_and_marks_what_did_not_run(tmp_path):
    base, edited = tmp_path / "base", tmp_path / "edited"
    _write(base, "2026-01-01T00-00-00", {"mmlu": {"acc,none": 0.30, "acc_stderr,none": 0.1}})
    _write(base, "2026-01-02T00-00-00", {"bbh": {"exact_match,get-answer": 0.10}})
    _write(
        base,
        "2026-01-02T00-00-01",
        {"c3": {"acc,none": 0.5, "acc_stderr,none": 0.05}, "axb_gen": {"mcc,none": 0.2}},
    )
    _write(edited, "2026-01-01T00-00-00", {"mmlu": {"acc,none": 0.99}})
    _write(edited, "2026-01-03T00-00-00", {"mmlu": {"acc,none": 0.25}})
    table = comparison_markdown(base, edited)
    assert "| MMLU | acc | 0.300 ± 0.100 | 0.250 | -0.050 |" in table  # the newer run wins
    assert "| BBH | exact_match | 0.100 | not run |  |" in table
    assert "| C3 | acc | 0.500 ± 0.050 | not run |  |" in table
    assert "| MBPP | pass_at_1 | not run | not run |  |" in table


def test_a_folder_without_results_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="--output_path"):
        load_scores(tmp_path)


def test_standard_errors_follow_the_metric_and_its_filter(tmp_path):
    base = tmp_path / "base"
    _write(
        base,
        "2026-01-01T00-00-00",
        {
            "bbh": {"exact_match,get-answer": 0.2, "exact_match_stderr,get-answer": 0.04},
            "edit_capability_lite_tydiqa": {"f1,none": 0.3, "f1_stderr,none": "N/A"},
        },
    )
    scores = load_scores(base)
    assert scores["bbh"]["exact_match,get-answer"] == (0.2, 0.04)
    assert scores["edit_capability_lite_tydiqa"]["f1"] == (0.3, None)
