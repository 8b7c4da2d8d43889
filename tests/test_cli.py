"""The lm-edit console script's commands."""

from __future__ import annotations

from lm_edit.cli import main


def test_editors_lists_rome(capsys):
    assert main(["editors"]) == 0
    out = capsys.readouterr().out
    assert "rome" in out and "none" in out


def test_data_shows_cases(capsys):
    assert main(["data", "demo", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("52 cases") and out.count("\n- demo-") == 2


def test_errors_are_reported_without_traceback(capsys, tmp_path):
    assert main(["data", str(tmp_path / "missing.json")]) == 2
    assert "lm-edit: error:" in capsys.readouterr().err
