"""The report's tables, as plain header + rows (rendered to Markdown or HTML elsewhere).

* damage table (Table 1 of Lin et al., 2024): editor x #edits x capability tasks + average;
* edit-success tables (Table 2 layout), one per editing task: reliability, generality,
  locality and portability, each by the task's first metric of that kind, sequential
  (scored after the checkpoint's last edit) beside individual (right after its own edit);
* editing table: every metric of the editing tasks, for reference;
* drift table: parameter drift, language modelling, edit time and memory;
* answers table (when the sweep logged samples): per capability task, the share of items
  answered as the unedited model answered them;
* the leaderboard is in :mod:`lm_edit.studies.report.leaderboard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from lm_edit.evaluation.probes import KINDS as PROBE_KINDS
from lm_edit.studies.report.answers import (
    constant_answer,
    task_answers,
    unchanged_share,
)
from lm_edit.studies.report.load import Checkpoint, is_edit_task

EDIT_ORDER = ("reliability", "es_", "generality", "ps_", "locality", "ns_", "portability")
# Locality's headline is agreement with the unedited model (the definition of Yao et al.,
# 2023), when the task reports it.
PREFERRED = {"locality": "unedited"}
INDIVIDUAL = "_individual"
SEQUENTIAL_NOTE = (
    "Sequential scores are taken after the checkpoint's last edit, on all cases edited so far; "
    "*individual* scores each case right after its own edit. The unedited row scores the "
    "planned cases before any edit."
)


@dataclass
class Table:
    """A titled table: column names and rows of cells (numbers or text)."""

    title: str
    header: list[str]
    rows: list[list[object]]
    note: str = ""


def capability_tasks(rows: list[Checkpoint]) -> list[str]:
    """Top-level tasks that are not editing tasks, in first-seen order."""
    names: list[str] = []
    for row in rows:
        for task in row.top_level:
            if task not in names and row.scores.get(task) and not is_edit_task(row.scores[task]):
                names.append(task)
    return names


def edit_tasks(rows: list[Checkpoint]) -> list[str]:
    """Tasks reporting editing metrics, in first-seen order."""
    names: list[str] = []
    for row in rows:
        for task, metrics in row.scores.items():
            if task not in names and is_edit_task(metrics):
                names.append(task)
    return names


def primary_metric(rows: list[Checkpoint], task: str) -> str:
    """The task's first reported metric (lm-eval keeps the YAML's metric order)."""
    for row in rows:
        if row.scores.get(task):
            return next(iter(row.scores[task]))
    raise KeyError(task)


def capability_scores(row: Checkpoint, tasks: list[str], metrics: dict[str, str]) -> list:
    """The row's primary score per capability task (None where missing)."""
    return [row.scores.get(task, {}).get(metrics[task]) for task in tasks]


def average(values: list) -> float | None:
    """Mean of the values that are present; None if none is."""
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def percent(value: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if value is None else 100 * value


def damage_table(rows: list[Checkpoint]) -> Table:
    """Editor x #edits x capability task (primary metric, %) and the average."""
    tasks = capability_tasks(rows)
    metrics = {task: primary_metric(rows, task) for task in tasks}
    header = ["editor", "#edits", *[f"{t} ({metrics[t]})" for t in tasks], "average"]
    body = []
    for row in rows:
        scores = capability_scores(row, tasks, metrics)
        body.append([row.editor, row.n_edits, *map(percent, scores), percent(average(scores))])
    note = constant_answer_note(constant_answer_tasks(rows, tasks))
    return Table("Capability after sequential edits (%)", header, body, note)


def unedited_rows(rows: list[Checkpoint]) -> dict[str, Checkpoint]:
    """Each sweep's unedited checkpoint."""
    return {r.sweep: r for r in rows if r.is_unedited}


def constant_answer_tasks(
    rows: list[Checkpoint], tasks: list[str]
) -> dict[tuple[str, str], tuple[str, float]]:
    """``{(sweep, task): (answer, share)}`` for the capability tasks on which a sweep's
    unedited model gives one answer to :data:`CONSTANT_SHARE` or more of the logged items."""
    out = {}
    for sweep, row in unedited_rows(rows).items():
        for task in tasks:
            found = constant_answer(row, task)
            if found:
                out[(sweep, task)] = found
    return out


def collapsed_tasks(
    row: Checkpoint, tasks: list[str], flagged: dict[tuple[str, str], tuple[str, float]]
) -> dict[str, tuple[str, float]]:
    """``{task: (answer, share)}`` for the tasks the unedited model answers variously on
    which this checkpoint gives one answer to :data:`CONSTANT_SHARE` or more of the items:
    it has collapsed there, whatever its score."""
    out = {}
    for task in tasks:
        found = None if (row.sweep, task) in flagged else constant_answer(row, task)
        if found:
            out[task] = found
    return out


def collapsed_note(
    rows: list[Checkpoint], tasks: list[str], flagged: dict[tuple[str, str], tuple[str, float]]
) -> str:
    """Names the checkpoints whose answers collapsed to one, per task (``flagged``: the
    tasks :func:`constant_answer_tasks` left out)."""
    named = [
        f"{row.editor} at {row.n_edits} edits on {task} (answer {answer!r} to "
        f"{100 * share:.0f}% of its items)"
        for row in rows
        for task, (answer, share) in collapsed_tasks(row, tasks, flagged).items()
    ]
    if not named:
        return ""
    return (
        "Collapsed (one answer to nearly every item of a task the unedited model answers "
        f"variously, whatever the score): {'; '.join(named)}."
    )


def constant_answer_note(flagged: dict[tuple[str, str], tuple[str, float]]) -> str:
    """Names the tasks that cannot show damage, and why."""
    if not flagged:
        return ""
    several = len({sweep for sweep, _ in flagged}) > 1

    def where(sweep: str, task: str) -> str:
        return f"{task} in {sweep}" if several else task

    named = "; ".join(
        f"{where(sweep, task)}: answer {answer!r} to {100 * share:.0f}% of its items"
        for (sweep, task), (answer, share) in flagged.items()
    )
    return (
        f"Cannot show damage (the unedited model gives one answer to nearly every item, "
        f"so the score is the share of items whose gold answer is that one): {named}."
    )


def answers_table(rows: list[Checkpoint]) -> Table | None:
    """Per checkpoint and capability task, the share of logged items answered as the
    unedited model of the same sweep answered them (%); None without logged samples."""
    tasks = capability_tasks(rows)
    base = unedited_rows(rows)
    if not any(task_answers(r, t) for r in base.values() for t in tasks):
        return None
    body = []
    for row in rows:
        cells = [percent(unchanged_share(row, task, base.get(row.sweep))) for task in tasks]
        body.append([row.editor, row.n_edits, *cells])
    header = ["editor", "#edits", *tasks]
    flagged = constant_answer_tasks(rows, tasks)
    checks = [constant_answer_note(flagged), collapsed_note(rows, tasks, flagged)]
    note = " ".join(
        [
            "Share of the logged items (lm-eval's samples, `--log_samples`) that get the same "
            "answer as from the unedited model: the most likely choice of a multiple-choice "
            "item, the filtered generation otherwise. It moves whenever the answers change, "
            "also where the accuracy does not.",
            *filter(None, checks),
        ]
    )
    return Table("Answers unchanged from the unedited model (%)", header, body, note)


def _edit_metric_rank(name: str) -> int:
    return next((i for i, p in enumerate(EDIT_ORDER) if name.startswith(p)), len(EDIT_ORDER))


def edit_metric_columns(rows: list[Checkpoint]) -> list[tuple[str, str]]:
    """(task, metric) of every editing metric: reliability, generality, locality,
    portability, each group in the order the results report them."""
    columns = []
    for task in edit_tasks(rows):
        names = dict.fromkeys(m for row in rows for m in row.scores.get(task, {}))
        columns += [(task, m) for m in sorted(names, key=_edit_metric_rank)]
    return columns


def headline_metrics(rows: list[Checkpoint], task: str) -> list[tuple[str, str, str | None]]:
    """(probe kind, sequential metric, its individual twin or None) for every kind the
    task reports: each kind's first sequential metric in the results' order (for locality
    the first against the unedited model, when there is one)."""
    names = list(dict.fromkeys(m for row in rows for m in row.scores.get(task, {})))
    out = []
    for kind in PROBE_KINDS:
        sequential = [m for m in names if m.startswith(kind) and INDIVIDUAL not in m]
        preferred = [m for m in sequential if PREFERRED.get(kind, "\0") in m]
        sequential = preferred or sequential
        if sequential:
            twin = f"{sequential[0]}{INDIVIDUAL}"
            out.append((kind, sequential[0], twin if twin in names else None))
    return out


def edit_success_tables(rows: list[Checkpoint]) -> list[Table]:
    """Per editing task, the Table 2 layout: each probe kind's headline metric (%),
    sequential and, where recorded, individual."""
    tables = []
    for task in edit_tasks(rows):
        columns = headline_metrics(rows, task)
        if not columns:
            continue
        header, metrics = ["editor", "#edits"], []
        for kind, sequential, individual in columns:
            header.append(kind)
            metrics.append(sequential)
            if individual:
                header.append(f"{kind} (individual)")
                metrics.append(individual)
        body = [
            [row.editor, row.n_edits, *[percent(row.scores.get(task, {}).get(m)) for m in metrics]]
            for row in rows
            if row.scores.get(task)
        ]
        used = ", ".join(f"{kind}: `{sequential}`" for kind, sequential, _ in columns)
        note = f"Metrics: {used}. {SEQUENTIAL_NOTE}"
        tables.append(Table(f"Edit success on {task} (%)", header, body, note))
    return tables


def edit_table(rows: list[Checkpoint]) -> Table:
    """Every editing metric per checkpoint (%); ``individual`` in a name marks a score
    taken right after that case's own edit, the rest are sequential."""
    columns = edit_metric_columns(rows)
    header = ["editor", "#edits", *[f"{task} {metric}" for task, metric in columns]]
    body = [
        [row.editor, row.n_edits, *[percent(row.scores.get(t, {}).get(m)) for t, m in columns]]
        for row in rows
    ]
    return Table("All editing metrics (%)", header, body, SEQUENTIAL_NOTE)


def _mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def drift_table(rows: list[Checkpoint]) -> Table:
    """Mean drift of the edited matrices, adjusted perplexity, edit time and memory."""
    header = [
        "editor",
        "#edits",
        "mean Pearson r",
        "mean rel. Frobenius",
        "adjusted ppl",
        "ppl",
        "distinct-2",
        "edit s (total)",
        "peak memory MiB",
    ]
    body = []
    for row in rows:
        drift, ppl = row.entry.get("drift") or {}, row.entry.get("perplexity") or {}
        body.append(
            [
                row.editor,
                row.n_edits,
                drift.get("pearson_r"),
                drift.get("relative_frobenius"),
                ppl.get("adjusted_ppl"),
                ppl.get("ppl"),
                ppl.get("distinct_2"),
                row.entry.get("edit_seconds_total"),
                _mib(row.entry.get("peak_memory_bytes")),
            ]
        )
    return Table("Parameter drift, language modelling and cost", header, body)
