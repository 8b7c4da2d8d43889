"""Read sweep folders into one row per (editor, #edits) checkpoint, metric names generic:
every numeric metric in each results JSON is kept."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_edit.studies.sweep.manifest import MANIFEST, UNEDITED

NOT_METRICS = {"sample_len", "sample_count"}
EDIT_METRIC_PREFIXES = ("reliability", "generality", "locality", "portability", "es_", "ps_")


@dataclass
class Checkpoint:
    """One evaluated checkpoint: who, after how many edits, its scores, and the folder
    holding its results (and samples, when logged)."""

    sweep: str
    editor: str
    n_edits: int
    scores: dict[str, dict[str, float]]
    entry: dict[str, Any] = field(default_factory=dict)
    top_level: list[str] = field(default_factory=list)
    drift_rows: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict, repr=False)
    """Logged answers per capability task, filled on first use (``report.answers``)."""
    stderrs: dict[str, dict[str, float]] = field(default_factory=dict)
    """lm-eval's standard error per task and metric, where it reports one."""

    @property
    def is_unedited(self) -> bool:
        """The sweep's unedited checkpoint (named ``unedited`` or ``unedited (folder)``)."""
        return self.editor.split(" ")[0] == UNEDITED

    @property
    def label(self) -> str:
        """The editor name, as rows and legends show it."""
        return self.editor


def numeric_metrics(task_results: dict[str, Any], known: dict[str, Any] | None) -> dict[str, float]:
    """``{metric: value}`` of one task's results: its metrics (those in lm-eval's
    ``higher_is_better`` for the task, when given), without stderr and non-numbers; the
    filter suffix is dropped when it is ``none`` (``acc,none`` -> ``acc``)."""
    out = {}
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if "_stderr" in key or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name in NOT_METRICS or (known and name not in known):
            continue
        out[_metric_name(name, filt)] = float(value)
    return out


def metric_stderrs(task_results: dict[str, Any]) -> dict[str, float]:
    """``{metric: standard error}`` of one task's results, named as :func:`numeric_metrics`
    names the metric (lm-eval's ``acc_stderr,none`` -> ``acc``); "N/A" entries are left out."""
    out = {}
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if not name.endswith("_stderr") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[_metric_name(name.removesuffix("_stderr"), filt)] = float(value)
    return out


def _metric_name(name: str, filt: str) -> str:
    return name if filt in ("", "none") else f"{name},{filt}"


def top_level_tasks(results: dict[str, Any]) -> list[str]:
    """Tasks and groups that are not inside a reported group, in results order; a group
    that reports no score of its own (``edit_capability_lite_mmlu`` around ``mmlu``)
    stands for its highest scored subtasks."""
    groups = results.get("group_subtasks", {})
    children = {c for subtasks in groups.values() for c in subtasks}

    def scored(task: str) -> list[str]:
        metrics = results["results"].get(task, {})
        has_score = any("," in k and isinstance(v, int | float) for k, v in metrics.items())
        if has_score or not groups.get(task):
            return [task]
        return [t for child in groups[task] for t in scored(child)]

    return [t for top in results["results"] if top not in children for t in scored(top)]


def is_edit_task(metrics: dict[str, float]) -> bool:
    """An editing task reports reliability/generality (or ES/PS) metrics."""
    return any(name.startswith(EDIT_METRIC_PREFIXES) for name in metrics)


def load_sweep(folder: Path) -> list[Checkpoint]:
    """Every finished checkpoint of one sweep folder."""
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: is it an `lm-edit sweep` folder?")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for entry in manifest.get("checkpoints", {}).values():
        results = json.loads((folder / entry["results"]).read_text(encoding="utf-8"))
        known = results.get("higher_is_better", {})
        scores = {t: numeric_metrics(r, known.get(t)) for t, r in results["results"].items()}
        rows.append(
            Checkpoint(
                folder.name,
                entry["editor"],
                int(entry["n_edits"]),
                scores,
                entry,
                top_level_tasks(results),
                results.get("lm_edit_sweep", {}).get("drift_per_matrix", []),
                (folder / entry["results"]).parent,
                results.get("group_subtasks", {}),
                stderrs={t: metric_stderrs(r) for t, r in results["results"].items()},
            )
        )
    return rows


def load_sweeps(folders: list[Path]) -> list[Checkpoint]:
    """Checkpoints of several sweeps; an editor found in more than one folder is renamed
    ``editor (folder)``, and so is each folder's unedited row."""
    loaded = {folder: load_sweep(folder) for folder in folders}
    seen: dict[str, set[str]] = {}
    for rows in loaded.values():
        for row in rows:
            seen.setdefault(row.editor, set()).add(row.sweep)
    out = []
    for rows in loaded.values():
        for row in rows:
            if len(seen[row.editor]) > 1:
                row.editor = f"{row.editor} ({row.sweep})"
            out.append(row)
    order = {UNEDITED: 0}
    return sorted(
        out, key=lambda r: (order.get(r.editor.split(" ")[0], 1), natural_key(r.editor), r.n_edits)
    )


def natural_key(name: str) -> tuple[tuple[int, float, str], ...]:
    """Sort key that orders the numbers inside a name by value (``grace-eps=3`` before
    ``grace-eps=10``), the rest as text."""
    parts = re.split(r"(\d+(?:\.\d+)?)", name)
    return tuple((1, float(part), "") if i % 2 else (0, 0.0, part) for i, part in enumerate(parts))
