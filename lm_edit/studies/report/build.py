"""``lm-edit report``: read sweep folders, write ``report.md``, ``report.html`` (figures
embedded) and the PNG figures into one output folder."""

from __future__ import annotations

from pathlib import Path

from lm_edit.atomic import save_text
from lm_edit.studies.report.leaderboard import leaderboard
from lm_edit.studies.report.load import load_sweeps
from lm_edit.studies.report.plots import (
    damage_curves,
    drift_curves,
    edit_curves,
    layer_drift_curves,
)
from lm_edit.studies.report.render import html_page, markdown_table
from lm_edit.studies.report.tables import (
    answers_table,
    damage_table,
    drift_table,
    edit_success_tables,
    edit_table,
)

TITLE = "Sequential-editing study"


def write_report(sweeps: list[Path], output: Path, at: int | None = None) -> list[Path]:
    """Write the report of ``sweeps`` into ``output``; return the files written."""
    rows = load_sweeps(sweeps)
    if not rows:
        raise ValueError(f"No finished checkpoints in {', '.join(map(str, sweeps))}.")
    answers = answers_table(rows)
    tables = [leaderboard(rows, at), damage_table(rows), *([answers] if answers else [])]
    tables += edit_success_tables(rows)
    tables += [drift_table(rows), edit_table(rows)]
    figures = [
        figure
        for figure in (
            damage_curves(rows, output / "damage_curves.png"),
            edit_curves(rows, output / "edit_curves.png"),
            drift_curves(rows, output / "drift_curves.png"),
            layer_drift_curves(rows, output / "drift_by_matrix.png"),
        )
        if figure is not None
    ]
    intro = (
        f"Sweeps: {', '.join(str(s) for s in sweeps)}. Scores in %; #edits 0 is the unedited model."
    )
    markdown = [f"# {TITLE}", "", intro, ""]
    markdown += [markdown_table(t) for t in tables]
    markdown += [f"![{f.stem}]({f.name})\n" for f in figures]
    save_text("\n".join(markdown), output / "report.md")
    save_text(html_page(TITLE, intro, tables, figures), output / "report.html")
    return [output / "report.md", output / "report.html", *figures]
