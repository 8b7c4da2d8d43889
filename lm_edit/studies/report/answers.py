"""The capability tasks' answers, read from the samples a sweep writes with
``--log_samples``: how often the unedited model gives its most common answer (a task it
answers the same way on nearly every item cannot show damage: its score is the share of
items whose gold answer is that one), and how often an edited model answers as the
unedited model did."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from lm_edit.studies.report.load import Checkpoint
from lm_edit.studies.sweep.outputs import read_samples

CONSTANT_SHARE = 0.9
"""A task whose unedited answers are this share or more one answer cannot show damage."""

AnswerKey = tuple[str, int, str]
"""(task, doc_id, filter) of one logged item."""


def item_answer(record: dict[str, Any]) -> str:
    """The answer of one logged item: ``choice i`` for a log-likelihood multiple-choice
    item whose most likely choice is the i-th (from 0, as lm-eval's targets count), else
    the filtered generation (stripped)."""
    responses = record.get("filtered_resps")
    if isinstance(responses, list) and responses and all(_is_choice(r) for r in responses):
        scores = [float(r[0]) for r in responses]
        return f"choice {max(range(len(scores)), key=scores.__getitem__)}"
    if isinstance(responses, list):
        responses = responses[0] if responses else ""
    return str(responses).strip()


def _is_choice(response: object) -> bool:
    """A (log-likelihood, is_greedy) pair, as lm-eval logs a choice."""
    return isinstance(response, list | tuple) and len(response) == 2


def read_answers(folder: Path, tasks: list[str]) -> dict[AnswerKey, str] | None:
    """Every logged item's answer of ``tasks`` in one checkpoint folder; None when a task
    has no samples file (the sweep ran without ``--log_samples``)."""
    answers: dict[AnswerKey, str] = {}
    for task in tasks:
        records = read_samples(folder, task)
        if records is None:
            return None
        for record in records:
            key = (task, int(record["doc_id"]), str(record.get("filter", "")))
            answers[key] = item_answer(record)
    return answers


def leaf_tasks(task: str, groups: dict[str, list[str]]) -> list[str]:
    """The tasks under ``task`` that log samples (itself when it is not a group)."""
    children = groups.get(task) or []
    if not children:
        return [task]
    return [leaf for child in children for leaf in leaf_tasks(child, groups)]


def most_common_share(answers: dict[AnswerKey, str]) -> tuple[str, float]:
    """The most common answer and the share of items that got it."""
    answer, count = Counter(answers.values()).most_common(1)[0]
    return answer, count / len(answers)


def agreement(answers: dict[AnswerKey, str], reference: dict[AnswerKey, str]) -> float | None:
    """Share of the items in both whose answer is the reference's; None if none shared."""
    shared = answers.keys() & reference.keys()
    if not shared:
        return None
    return sum(answers[key] == reference[key] for key in shared) / len(shared)


def task_answers(row: Checkpoint, task: str) -> dict[AnswerKey, str] | None:
    """The checkpoint's logged answers on ``task`` (a group: its subtasks'), or None;
    read once per loaded checkpoint."""
    if row.folder is None:
        return None
    if task not in row.answers:
        row.answers[task] = read_answers(row.folder, leaf_tasks(task, row.groups))
    return row.answers[task]


def unchanged_share(row: Checkpoint, task: str, unedited: Checkpoint | None) -> float | None:
    """Share of ``task``'s logged items ``row`` answers as ``unedited`` did; None where
    either has no samples."""
    if unedited is None:
        return None
    answers, reference = task_answers(row, task), task_answers(unedited, task)
    return agreement(answers, reference) if answers and reference else None


def constant_answer(row: Checkpoint, task: str) -> tuple[str, float] | None:
    """``(answer, share)`` when the checkpoint gives one answer to :data:`CONSTANT_SHARE`
    or more of ``task``'s logged items, else None (also without samples)."""
    answers = task_answers(row, task)
    if not answers:
        return None
    answer, share = most_common_share(answers)
    return (answer, share) if share >= CONSTANT_SHARE else None
