"""The report's leaderboard: editors ranked at one #edits by capability retained.

Capability retained is the mean over capability tasks of the editor's score divided by
the unedited model's, leaving out the tasks the unedited model answers the same way
(they cannot show damage). Its standard error comes from lm-eval's stderr of the
editor's and the unedited model's scores. An editor whose capability retained lies
within one standard error of 100% kept its capability: such editors rank after any that
gained and before any that lost, and among themselves by the share of answers they left
unchanged from the unedited model (when the sweep logged samples), then by edit success,
so an accuracy that moved by chance does not decide the order. Editors that gained or
lost are ranked by capability retained. An editor whose logged answers collapsed to one
answer on a task the unedited model answers variously lost its capability there,
whatever its score (a model that picks one choice everywhere scores the share of items
whose gold answer is that choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lm_edit.studies.report.answers import unchanged_share
from lm_edit.studies.report.load import Checkpoint
from lm_edit.studies.report.tables import (
    Table,
    average,
    capability_scores,
    capability_tasks,
    collapsed_tasks,
    constant_answer_note,
    constant_answer_tasks,
    edit_metric_columns,
    percent,
    primary_metric,
    unedited_rows,
)


@dataclass(eq=False)
class Standing:
    """One editor's figures at the leaderboard's #edits (fractions, None where unknown);
    compared by identity."""

    row: Checkpoint
    retained: float | None
    retained_stderr: float | None
    unchanged: float | None
    success: float | None
    collapsed: list[str]
    """Capability tasks on which the editor's answers collapsed to one (see
    :func:`lm_edit.studies.report.tables.collapsed_tasks`)."""


def success_metric(rows: list[Checkpoint]) -> tuple[str, str] | None:
    """The (task, metric) shown as edit success: the first reliability-type metric."""
    columns = [c for c in edit_metric_columns(rows) if "individual" not in c[1]]
    return columns[0] if columns else None


def default_at(rows: list[Checkpoint]) -> int:
    """The largest #edits reached by every editor (else the largest reached by any)."""
    edited = [r for r in rows if not r.is_unedited]
    if not edited:
        return 0
    per_editor: dict[str, set[int]] = {}
    for row in edited:
        per_editor.setdefault(row.editor, set()).add(row.n_edits)
    common = set.intersection(*per_editor.values())
    return max(common) if common else max(r.n_edits for r in edited)


def retained_with_stderr(
    row: Checkpoint, reference: Checkpoint, tasks: list[str], metrics: dict[str, str]
) -> tuple[float | None, float | None]:
    """Mean of score / unedited score over ``tasks``, and its standard error from both
    scores' stderrs (None unless every counted task reports both)."""
    ratios, variances = [], []
    for task in tasks:
        metric = metrics[task]
        score = row.scores.get(task, {}).get(metric)
        base = reference.scores.get(task, {}).get(metric)
        if score is None or not base:
            continue
        ratios.append(score / base)
        stderr = row.stderrs.get(task, {}).get(metric)
        base_stderr = reference.stderrs.get(task, {}).get(metric)
        if stderr is None or base_stderr is None:
            variances.append(None)
        else:
            variances.append((stderr / base) ** 2 + (score * base_stderr / base**2) ** 2)
    if not ratios:
        return None, None
    known = None not in variances
    return sum(ratios) / len(ratios), math.sqrt(sum(variances)) / len(ratios) if known else None


GAINED, KEPT, LOST, UNKNOWN = "gained", "kept", "lost", "unknown"
TIERS = (GAINED, KEPT, LOST, UNKNOWN)


def tier(item: Standing) -> str:
    """Whether the editor's capability retained lies above, within or below one standard
    error of 100% (exactly 100% counts as kept when there is no standard error); an
    editor whose answers collapsed on a task lost its capability, whatever its score."""
    if item.collapsed:
        return LOST
    if item.retained is None:
        return UNKNOWN
    spread = item.retained_stderr or 0.0
    if item.retained - spread > 1.0:
        return GAINED
    if item.retained + spread < 1.0:
        return LOST
    return KEPT


def _descending(value: float | None) -> float:
    return -value if value is not None else math.inf


def _order_in(name: str, item: Standing) -> tuple[float, ...]:
    if name == KEPT:
        return (_descending(item.unchanged), _descending(item.success), _descending(item.retained))
    return (_descending(item.retained), _descending(item.success))


def rank(standings: list[Standing]) -> dict[str, list[Standing]]:
    """The standings per tier, each in rank order (the tiers rank in :data:`TIERS` order)."""
    return {
        name: sorted((s for s in standings if tier(s) == name), key=lambda s: _order_in(name, s))
        for name in TIERS
    }


def leaderboard(rows: list[Checkpoint], at: int | None = None) -> Table:
    """Editors ranked at ``at`` edits (default: :func:`default_at`) by capability
    retained, in the tiers the module describes; without capability tasks, by edit success.
    The unedited model is the first row."""
    at = default_at(rows) if at is None else at
    tasks = capability_tasks(rows)
    metrics = {task: primary_metric(rows, task) for task in tasks}
    success = success_metric(rows)
    base = unedited_rows(rows)
    flagged = constant_answer_tasks(rows, tasks)

    def standing(row: Checkpoint) -> Standing:
        reference = base.get(row.sweep)
        kept = [t for t in tasks if (row.sweep, t) not in flagged]
        retained, stderr = (
            retained_with_stderr(row, reference, kept, metrics) if reference else (None, None)
        )
        shares = [unchanged_share(row, task, reference) for task in tasks]
        won = None if success is None else row.scores.get(success[0], {}).get(success[1])
        collapsed = list(collapsed_tasks(row, kept, flagged)) if reference else []
        return Standing(row, retained, stderr, average(shares), won, collapsed)

    candidates = [standing(r) for r in rows if r.n_edits == at and not r.is_unedited]
    tiers = rank(candidates)
    logged = any(s.unchanged is not None for s in candidates)
    header = ["rank", "editor", "#edits", "capability retained (%)", "capability avg (%)"]
    header += ["answers unchanged (%)"] if logged else []
    header.append(f"edit success: {success[0]} {success[1]} (%)" if success else "edit success")

    def line(label: str, item: Standing) -> list[object]:
        cells = [label, item.row.editor, item.row.n_edits, percent(item.retained)]
        cells.append(percent(average(capability_scores(item.row, tasks, metrics))))
        cells += [percent(item.unchanged)] if logged else []
        return [*cells, percent(item.success)]

    body = [line("-", standing(row)) for row in base.values()]
    ordered = [item for name in TIERS for item in tiers[name]]
    body += [line(str(i), item) for i, item in enumerate(ordered, start=1)]
    note = _note(at, tasks, flagged, tiers, logged)
    return Table(f"Leaderboard at {at} edits", header, body, note)


def _label(item: Standing) -> str:
    collapsed = f" (collapsed on {', '.join(item.collapsed)})" if item.collapsed else ""
    return f"{item.row.editor}{collapsed}"


def _note(
    at: int,
    tasks: list[str],
    flagged: dict[tuple[str, str], tuple[str, float]],
    tiers: dict[str, list[Standing]],
    logged: bool,
) -> str:
    """How the leaderboard ranked, which tasks it left out, and which editors kept their
    capability within the standard error."""
    note = (
        f"Ranked at {at} edits by capability retained: mean over the capability tasks of "
        "the editor's score divided by the unedited model's score on the same task"
    )
    if flagged:
        note += ", leaving out the tasks named next. " + constant_answer_note(flagged)
    elif tasks:
        note += (
            ". Whether each capability task can show damage is checked when the sweep "
            "logs samples (`--log_samples`)."
        )
    else:
        return note + " (no capability tasks here: ranked by edit success)."
    then = "answers unchanged, then by edit success" if logged else "edit success"
    note += (
        " Editors within one standard error of 100% (from lm-eval's stderr of the editor's "
        "and the unedited model's scores) kept their capability and are ordered by "
        f"{then}; editors above or below rank before or after them, by capability retained. "
        "An editor whose logged answers collapsed to one on a task the unedited model "
        "answers variously lost its capability, whatever its score."
    )
    named = [
        f"{name}: {', '.join(map(_label, tiers[name]))}"
        for name in (GAINED, KEPT, LOST)
        if tiers[name]
    ]
    return note + (f" Here {'; '.join(named)}." if named else "")
