"""Tables to Markdown and HTML, and the self-contained HTML page (PNGs embedded)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from lm_edit.studies.report.tables import Table


def cell(value: object) -> str:
    """Numbers with 4 significant figures at most, missing values as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4g}"
    return str(value)


def markdown_table(table: Table) -> str:
    """A titled GitHub Markdown table."""
    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(table.header))) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    """A titled HTML table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    note = f"<p>{html.escape(table.note)}</p>" if table.note else ""
    return f"<h3>{html.escape(table.title)}</h3>{note}<table><tr>{head}</tr>{body}</table>"


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin-bottom:1.5em;font-size:0.85em}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
)


def html_page(title: str, intro: str, tables: list[Table], figures: list[Path]) -> str:
    """One HTML document with every table and every figure embedded as base64 PNG."""
    parts = [f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    parts += [html_table(t) for t in tables]
    for figure in figures:
        data = base64.b64encode(figure.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{html.escape(figure.stem)}" src="data:image/png;base64,{data}">')
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
