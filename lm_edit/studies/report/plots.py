"""The report's figures (matplotlib, Agg backend): damage curves, editing-metric curves
and drift / language-modelling curves, each metric against #edits on a log axis, one line
per editor; the unedited model is a dashed horizontal line."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from lm_edit.studies.report.answers import task_answers, unchanged_share
from lm_edit.studies.report.load import Checkpoint
from lm_edit.studies.report.tables import (
    capability_scores,
    capability_tasks,
    edit_tasks,
    headline_metrics,
    primary_metric,
    unedited_rows,
)

Value = Callable[[Checkpoint], float | None]


def _panels(
    path: Path,
    title: str,
    panels: list[tuple[str, Value]],
    rows: list[Checkpoint],
    bands: dict[str, Value] | None = None,
) -> Path:
    """Draw ``panels`` against #edits; ``bands`` maps a panel's name to a standard error,
    drawn as a band of one standard error around the unedited model's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(panels))
    lines = math.ceil(len(panels) / columns)
    size = (4.2 * columns + 1.6, 3.2 * lines + 0.4)
    fig, axes = plt.subplots(lines, columns, figsize=size, squeeze=False)
    editors = list(dict.fromkeys(r.editor for r in rows if not r.is_unedited))
    ticks = sorted({r.n_edits for r in rows if not r.is_unedited})
    for ax, (name, value) in zip(axes.flat, panels, strict=False):
        for editor in editors:
            points = sorted(
                (r.n_edits, value(r)) for r in rows if r.editor == editor and value(r) is not None
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=editor)
        for row in rows:
            if row.is_unedited and value(row) is not None:
                ax.axhline(value(row), color="grey", linestyle="--", label=row.editor)
                spread = (bands or {}).get(name, lambda _: None)(row)
                if spread:
                    low, high = value(row) - spread, value(row) + spread
                    label = f"{row.editor} ± 1 stderr"
                    ax.axhspan(low, high, color="grey", alpha=0.15, label=label)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("# edits (log)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / size[0], 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _score(task: str, metric: str) -> Value:
    def value(row: Checkpoint) -> float | None:
        return row.scores.get(task, {}).get(metric)

    return value


def _stderr(task: str, metric: str) -> Value:
    def value(row: Checkpoint) -> float | None:
        return row.stderrs.get(task, {}).get(metric)

    return value


def _average(tasks: list[str], metrics: dict[str, str]) -> Value:
    def value(row: Checkpoint) -> float | None:
        scores = [v for v in capability_scores(row, tasks, metrics) if v is not None]
        return sum(scores) / len(scores) if scores else None

    return value


def _entry(section: str, key: str) -> Value:
    def value(row: Checkpoint) -> float | None:
        return (row.entry.get(section) or {}).get(key)

    return value


def _unchanged(task: str, unedited: dict[str, Checkpoint]) -> Value:
    def value(row: Checkpoint) -> float | None:
        share = unchanged_share(row, task, unedited.get(row.sweep))
        return None if share is None else 100 * share

    return value


def damage_panels(rows: list[Checkpoint]) -> list[tuple[str, Value]]:
    """One panel per capability task (its primary metric), and their average; with
    logged samples, one more per task: the share of answers unchanged from the unedited
    model's, which shows damage also where the accuracy does not move."""
    tasks = capability_tasks(rows)
    metrics = {t: primary_metric(rows, t) for t in tasks}
    panels = [(f"{t} ({metrics[t]})", _score(t, metrics[t])) for t in tasks]
    if len(tasks) > 1:
        panels.append(("average over tasks", _average(tasks, metrics)))
    unedited = unedited_rows(rows)
    logged = [t for t in tasks if any(task_answers(r, t) for r in unedited.values())]
    panels += [(f"{t}: answers unchanged (%)", _unchanged(t, unedited)) for t in logged]
    return panels


def damage_curves(rows: list[Checkpoint], path: Path) -> Path | None:
    """The :func:`damage_panels` against #edits, each task's score with a band of the
    unedited model's standard error (where lm-eval reports one)."""
    panels = damage_panels(rows)
    if not panels:
        return None
    tasks = capability_tasks(rows)
    metrics = {t: primary_metric(rows, t) for t in tasks}
    bands = {f"{t} ({metrics[t]})": _stderr(t, metrics[t]) for t in tasks}
    return _panels(path, "Capability vs. sequential edits", panels, rows, bands)


def edit_curve_metrics(rows: list[Checkpoint]) -> list[tuple[str, str]]:
    """(task, metric) drawn by the editing curves: the headline metrics of the edit
    success tables, each sequential one followed by its individual twin where recorded."""
    return [
        (task, metric)
        for task in edit_tasks(rows)
        for _, sequential, individual in headline_metrics(rows, task)
        for metric in (sequential, individual)
        if metric
    ]


def edit_curves(rows: list[Checkpoint], path: Path) -> Path | None:
    """One panel per editing task and headline metric (see ``edit_curve_metrics``)."""
    panels = [(f"{t} {m}", _score(t, m)) for t, m in edit_curve_metrics(rows)]
    return _panels(path, "Editing metrics vs. sequential edits", panels, rows) if panels else None


def drift_curves(rows: list[Checkpoint], path: Path) -> Path | None:
    """Mean Pearson r and relative Frobenius norm of the edited matrices, and the adjusted
    perplexity when it was measured."""
    panels = [
        ("mean Pearson r (edited vs. original)", _entry("drift", "pearson_r")),
        ("mean relative Frobenius norm of the change", _entry("drift", "relative_frobenius")),
    ]
    if any((r.entry.get("perplexity") or {}).get("adjusted_ppl") for r in rows):
        panels.append(("adjusted perplexity of generations", _entry("perplexity", "adjusted_ppl")))
    edited = [r for r in rows if not r.is_unedited]
    if not any(value(r) is not None for r in edited for _, value in panels):
        return None
    return _panels(path, "Parameter drift and language modelling", panels, rows)


MAX_LEGEND_ENTRIES = 12
"""Above this many edited matrices an editor's panels carry no legend."""


def _matrix_label(parameter: str, layer: int | None) -> str:
    """``layer 3 q_proj`` for ``model.layers.3.self_attn.q_proj.weight``; the parameter's
    name when its layer is unknown."""
    if layer is None:
        return parameter
    parts = parameter.removesuffix(".weight").split(".")
    return f"layer {layer} {parts[-1]}"


def layer_drift_curves(rows: list[Checkpoint], path: Path) -> Path | None:
    """Per editor (columns): Pearson r and relative Frobenius norm (rows) of every edited
    matrix against #edits, one line per matrix, labelled by its layer and module."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edited = [r for r in rows if not r.is_unedited and r.drift_rows]
    editors = list(dict.fromkeys(r.editor for r in edited))
    if not editors:
        return None
    fig, axes = plt.subplots(
        2, len(editors), figsize=(4.5 * len(editors), 6.0), squeeze=False, sharex=True
    )
    ticks = sorted({r.n_edits for r in edited})
    for column, editor in enumerate(editors):
        series: dict[str, list[tuple[int, dict]]] = {}
        for row in (r for r in edited if r.editor == editor):
            for matrix in row.drift_rows:
                series.setdefault(matrix["parameter"], []).append((row.n_edits, matrix))
        for line, (key, label) in enumerate(
            [
                ("pearson_r", "Pearson r (edited vs. original)"),
                ("relative_frobenius", "relative Frobenius norm of the change"),
            ]
        ):
            ax = axes[line][column]
            for name, points in sorted(series.items()):
                points.sort(key=lambda p: p[0])
                ax.plot(
                    [n for n, _ in points],
                    [m[key] for _, m in points],
                    marker="o",
                    label=_matrix_label(name, points[0][1]["layer"]),
                )
            ax.set_xscale("log")
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_title(f"{editor}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if line == 1:
                ax.set_xlabel("# edits (log)")
        if len(series) <= MAX_LEGEND_ENTRIES:
            axes[0][column].legend(fontsize=7)
        else:  # a legend of every matrix would cover the panels
            axes[0][column].set_title(f"{editor}: {len(series)} matrices, Pearson r", fontsize=9)
    fig.suptitle("Parameter drift per edited matrix")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
