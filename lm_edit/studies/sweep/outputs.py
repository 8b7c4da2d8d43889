"""Write one checkpoint's lm-eval output: the results JSON (as ``lm_eval`` writes it, plus
an ``lm_edit_sweep`` section) and, with ``--log_samples``, one JSONL file per task."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lm_eval.utils import handle_non_serializable

from lm_edit.atomic import save_text
from lm_edit.studies.sweep.folder import inside

RESULTS = "results.json"
VALUES = "values"
"""The sweep folder's cache of target values v* (editors run with ``cache_values=true``):
one subfolder per model state, so a copy of the folder resumes without optimising the
values of edits it re-applies."""


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(obj, default=handle_non_serializable, ensure_ascii=False, **kwargs)


def samples_file(folder: Path, task: str) -> Path:
    """Where a checkpoint folder keeps ``task``'s logged samples (``--log_samples``)."""
    return folder / f"samples_{task}.jsonl"


def read_samples(folder: Path, task: str) -> Iterator[dict[str, Any]] | None:
    """``task``'s logged samples in a checkpoint folder, one record per line: the file the
    sweep wrote, or that file gzip-compressed (``samples_<task>.jsonl.gz``, as an archived
    study may keep it); None when neither is there (the sweep ran without
    ``--log_samples``). A line that is not JSON raises ``ValueError`` naming the file."""
    path = samples_file(folder, task)
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return _records(candidate)
    return None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                number += 1
                if line.strip():
                    yield json.loads(line)
    except (json.JSONDecodeError, OSError, EOFError) as error:
        raise ValueError(
            f"{path}: unreadable logged samples (line {number}: {error}); "
            "run the checkpoint again or delete the file to report without it"
        ) from error


def write_checkpoint(folder: Path, output: dict[str, Any], extra: dict[str, Any]) -> list[Path]:
    """Write samples (if any) then ``results.json``, each atomically and each checked to
    lie inside ``folder``; return the files written, ``results.json`` last."""
    output = dict(output)
    samples = output.pop("samples", None) or {}
    written = []
    for task, rows in samples.items():
        text = "".join(_dumps(row) + "\n" for row in rows)
        written.append(inside(folder, samples_file(folder, task)))
        save_text(text, written[-1])
    written.append(inside(folder, folder / RESULTS))
    save_text(_dumps({**output, "lm_edit_sweep": extra}, indent=1) + "\n", written[-1])
    return written


def read_results(path: Path) -> dict[str, Any]:
    """Load one checkpoint's results JSON."""
    return json.loads(path.read_text(encoding="utf-8"))
