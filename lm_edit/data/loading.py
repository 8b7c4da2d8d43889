"""Load edit requests from any source and format, and choose the cases to edit.

``load_edit_requests(spec)`` accepts a built-in name, a local file or a Hub dataset id
(:mod:`lm_edit.data.sources`); the format is detected from the first record and logged
(:mod:`lm_edit.data.formats`). Every record is converted or reported, none is lost silently."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_edit.data.formats import detect_format
from lm_edit.data.records import Format, Record
from lm_edit.data.requests import EditRequest, EditRequestError
from lm_edit.data.sources import hub_revision, read_hub, read_local, resolve

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


def _case_id(data: Mapping[str, Any], default: str, where: str) -> str:
    value = data.get("case_id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
        raise EditRequestError(f"{where}: 'case_id' must be a non-empty string or an integer.")
    return str(value).strip()


def _build_request(
    data: Any, where: str, fmt: Format, default_id: str, notes: list[str]
) -> EditRequest:
    if not isinstance(data, Mapping):
        raise EditRequestError(f"{where}: a record must be a JSON object, got {data!r}.")
    case_id = _case_id(data, default_id, where)
    rec = Record(data, where, notes)
    fields = fmt.convert(rec)
    extra = {k: v for k, v in data.items() if k not in fmt.keys | {"case_id"} and v is not None}
    extra.update(rec.extra, format=fmt.key)
    return EditRequest(case_id=case_id, source=where, extra=extra, **fields)


def _convert_all(
    records: list[tuple[str, Any]], label: str, stem: str, skip_invalid: bool
) -> list[EditRequest]:
    """Detect the format, convert every record, and report problems (none is silently lost)."""
    if not records:
        raise EditRequestError(f"{label}: the data holds no records.")
    where, first = records[0]
    if not isinstance(first, Mapping):
        raise EditRequestError(f"{where}: a record must be a JSON object, got {first!r}.")
    fmt = detect_format(first, label)
    logger.info("%s: detected %s, %d records", label, fmt.label, len(records))
    requests: list[EditRequest] = []
    errors: list[EditRequestError] = []
    notes: list[str] = []
    for index, (where, data) in enumerate(records):
        try:
            if fmt.expand is not None:
                requests.extend(fmt.expand(data, where, f"{stem}-{index}"))
            else:
                requests.append(_build_request(data, where, fmt, f"{stem}-{index}", notes))
        except EditRequestError as exc:
            errors.append(exc)
    _report_problems(label, len(records), errors, notes, skip_invalid)
    _check_unique(requests)
    return requests


def _listing(messages: Sequence[str]) -> str:
    shown = "".join(f"\n  - {message}" for message in messages[:_MAX_LISTED])
    more = len(messages) - _MAX_LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def _report_problems(
    label: str, total: int, errors: list[EditRequestError], notes: list[str], skip: bool
) -> None:
    if notes:
        logger.warning("%s: %d value(s) left out:%s", label, len(notes), _listing(notes))
    if not errors:
        return
    messages = [str(error) for error in errors]
    if not skip:
        raise EditRequestError(
            f"{label}: {len(errors)} of {total} records are invalid:{_listing(messages)}\n"
            "Fix these records, or pass skip_invalid=True to leave them out (each is logged)."
        )
    for message in messages:
        logger.warning("%s: skipped invalid record: %s", label, message)
    logger.warning("%s: skipped %d of %d records (skip_invalid=True)", label, len(errors), total)


def _check_unique(requests: list[EditRequest]) -> None:
    seen: dict[str, str] = {}
    for request in requests:
        if request.case_id in seen:
            raise EditRequestError(
                f"{request.source}: case_id {request.case_id!r} is also used by "
                f"{seen[request.case_id]}; case ids must be unique."
            )
        seen[request.case_id] = request.source


@dataclass(frozen=True)
class EditData:
    """Loaded edit requests and where they came from: ``source`` records the resolved
    file or Hub dataset (id, split, revision), the record count and a content hash, so a
    result says which data a name meant."""

    requests: list[EditRequest]
    source: dict[str, Any]


def _content_hash(records: list[tuple[str, Any]]) -> str:
    canonical = json.dumps([data for _, data in records], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_edit_data(spec: str, *, split: str | None = None, skip_invalid: bool = False) -> EditData:
    """The requests of ``spec`` (a built-in name, a local .json/.jsonl file or a Hub id)
    with their provenance; see :func:`load_edit_requests`."""
    source = resolve(spec)
    provenance: dict[str, Any] = {"edit_data": spec}
    if isinstance(source, Path):
        if split is not None:
            raise ValueError(
                f"split={split!r} applies to Hub datasets only; edit_data={spec!r} is the local "
                f"file {source}. Drop split=, or pass a Hub id."
            )
        records, stem = read_local(source), source.stem
        provenance["path"] = str(source.resolve())
        provenance["file_sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    else:
        chosen = split or source.split
        records, stem = read_hub(source.hub_id, chosen, f"edit_data={spec}")
        provenance |= {
            "hub_id": source.hub_id,
            "split": chosen,
            "revision": hub_revision(source.hub_id),
        }
    provenance |= {"records": len(records), "content_sha256": _content_hash(records)}
    requests = _convert_all(records, f"edit_data={spec}", stem, skip_invalid)
    return EditData(requests, provenance)


def load_edit_requests(
    spec: str, *, split: str | None = None, skip_invalid: bool = False
) -> list[EditRequest]:
    """Load edit requests from a built-in name, a local .json/.jsonl file or a Hub dataset id.

    Every record is converted or reported: invalid records raise one ``EditRequestError``
    listing them all (file and line each), unless ``skip_invalid`` leaves them out, each
    logged as a warning. ``split`` applies to Hub datasets only (see the module docstring).
    """
    return load_edit_data(spec, split=split, skip_invalid=skip_invalid).requests


def select_requests(
    requests: Sequence[EditRequest], n_edits: int | None, seed: int
) -> list[EditRequest]:
    """Shuffle with ``random.Random(seed)`` and keep the first ``n_edits`` (``None``: all).

    Requests of one multi-edit case (same ``extra["group"]``, as MQuAKE's rewrites) move
    and are kept together: whole cases are taken, in shuffled order, while they fit.
    """
    if not requests:
        raise ValueError("No edit requests to select from: the edit data is empty.")
    if n_edits is not None and n_edits < 1:
        raise ValueError(f"n_edits must be >= 1 (or None for all records), got {n_edits}.")
    if n_edits is not None and n_edits > len(requests):
        raise ValueError(
            f"n_edits={n_edits} but the edit data has only {len(requests)} records. "
            f"Pass n_edits <= {len(requests)}, or n_edits=None to use all of them."
        )
    groups: dict[str, list[EditRequest]] = {}
    for request in requests:
        groups.setdefault(str(request.extra.get("group", request.case_id)), []).append(request)
    shuffled = list(groups.values())
    random.Random(seed).shuffle(shuffled)
    limit = len(requests) if n_edits is None else n_edits
    chosen: list[EditRequest] = []
    for group in shuffled:
        if len(chosen) + len(group) <= limit:
            chosen.extend(group)
    if len(chosen) < limit:
        logger.warning(
            "n_edits=%d: whole multi-edit cases give %d edits; using %d.",
            limit,
            len(chosen),
            len(chosen),
        )
    return chosen
