"""Unedited against edited scores of the capability suite, side by side, from the results
JSONs ``lm_eval --output_path`` writes (one or several runs per model state)."""

from __future__ import annotations

import json
from pathlib import Path

from lm_edit.studies.report.load import metric_stderrs, numeric_metrics

# benchmark -> (results entry, headline metrics), in the order of edit_capability.
HEADLINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "MMLU": ("mmlu", ("acc",)),
    "BBH": ("bbh", ("exact_match,get-answer",)),
    "MATH": ("edit_math", ("exact_match", "math_verify")),
    "AX-b": ("axb_gen", ("acc", "mcc")),
    "CommonsenseQA": ("commonsense_qa_gen", ("acc",)),
    "C3": ("c3", ("acc",)),
    "TyDiQA": ("edit_capability_lite_tydiqa", ("exact_match", "f1")),
    "MBPP": ("mbpp_sandboxed", ("pass_at_1",)),
    "zsre_edit": ("zsre_edit", ("reliability_tf", "generality_tf", "locality_tf_unedited")),
}


Score = tuple[float, float | None]  # (value, lm-eval's standard error, None when it gave none)


def load_scores(folder: Path) -> dict[str, dict[str, Score]]:
    """``{task: {metric: (value, stderr)}}`` over every ``results_*.json`` below ``folder``;
    a task in several files takes its values from the newest file (lm-eval's timestamped
    names)."""
    files = sorted(folder.rglob("results_*.json"), key=lambda path: path.name)
    if not files:
        raise FileNotFoundError(
            f"{folder} holds no lm-eval results_*.json: pass the --output_path of a run."
        )
    scores: dict[str, dict[str, Score]] = {}
    for path in files:
        results = json.loads(path.read_text(encoding="utf-8"))
        for task, values in results["results"].items():
            stderrs = metric_stderrs(values)
            scores[task] = {
                metric: (value, stderrs.get(metric))
                for metric, value in numeric_metrics(values, None).items()
            }
    return scores


def comparison_rows(
    unedited: dict[str, dict[str, Score]], edited: dict[str, dict[str, Score]]
) -> list[tuple[str, str, Score | None, Score | None]]:
    """(benchmark, metric, unedited, edited) for every headline metric; None where that
    state has no result for it (not run yet)."""
    rows = []
    for benchmark, (task, metrics) in HEADLINES.items():
        for metric in metrics:
            before = unedited.get(task, {}).get(metric)
            after = edited.get(task, {}).get(metric)
            rows.append((benchmark, metric.partition(",")[0], before, after))
    return rows


def comparison_markdown(unedited: Path, edited: Path) -> str:
    """The side-by-side table as Markdown: each score with its standard error (where
    lm-eval computed one) and the change where both states have a score."""
    lines = ["| benchmark | metric | unedited | edited | change |", "|---|---|---:|---:|---:|"]
    for benchmark, metric, before, after in comparison_rows(
        load_scores(unedited), load_scores(edited)
    ):
        change = f"{after[0] - before[0]:+.3f}" if before and after else ""
        lines.append(f"| {benchmark} | {metric} | {_cell(before)} | {_cell(after)} | {change} |")
    return "\n".join(lines) + "\n"


def _cell(score: Score | None) -> str:
    if score is None:
        return "not run"
    value, stderr = score
    return f"{value:.3f}" if stderr is None else f"{value:.3f} ± {stderr:.3f}"
