r"""Where edit data comes from: built-in names, local files and Hub ids, read into raw
records (each with the place it came from).

``load_edit_requests(spec)`` accepts a built-in name, a local file (a ``.json`` list of records
or a ``.jsonl`` file with one record per line) or a Hugging Face Hub dataset id (``org/name``).
The format is detected from the first record and logged at INFO level.

Built-in names. Each names one file. With ``$LM_EDIT_DATA_DIR`` set (a folder laid out like
``shared/data``) and the file present there, it is read; otherwise its Hub copy (the same
file in ``zjunlp/KnowEdit``) is loaded. A name whose file has no Hub copy is never replaced
by a different dataset: the error names the file and the nearest Hub dataset to pass instead.

=================================  ============================================  =============
name                               file (under ``$LM_EDIT_DATA_DIR``)            Hub copy
=================================  ============================================  =============
demo                               ``lm_edit/data/demo_edits.jsonl`` (shipped,   none needed
                                   52 records, our own JSONL schema)
counterfact                        ``counterfact/counterfact-edit.json``         none (ROME's
                                   (EasyEdit's evaluation split, 10,000)         release is
                                                                                 ``azhx/
                                                                                 counterfact``)
zsre                               ``portability/zsre_mend_edit.json`` (MEND     none
                                   format, one-hop portability, 1,037)
knowedit                           ``knowedit/benchmark/ZsRE/ZsRE-test-all.json``  ``ZsRE``
                                   (1,304)
knowedit_wiki_counterfact          ``.../wiki_counterfact/test_cf.json``          ``wiki_
                                   (KnowEdit's evaluation split)                 counterfact-
                                                                                 test``
knowedit_wiki_counterfact_train    ``.../wiki_counterfact/train_cf.json``         ``wiki_
                                   (1,428)                                       counterfact-
                                                                                 train``
knowedit_wiki_recent               ``.../wiki_recent/recent_test.json``           ``wiki_recent-
                                                                                 test``
knowedit_wiki_recent_train         ``.../wiki_recent/recent_train.json`` (570)    ``wiki_recent-
                                                                                 train``
knowedit_wikibio                   ``.../WikiBio/wikibio-test-all.json`` (306)    ``WikiBio-
                                                                                 test``
knowedit_wikibio_train             ``.../WikiBio/wikibio-train-all.json`` (464)   ``WikiBio-
                                                                                 train``
mquake                             ``mquake/MQuAKE-hard.json`` (429 four-hop     none (GitHub
                                   cases, 1,716 rewrites)                        only)
=================================  ============================================  =============

For ``zjunlp/KnowEdit`` the ``split`` argument names the benchmark file (see ``KNOWEDIT_FILES``;
default ``ZsRE``). For other Hub ids it is the ``datasets`` split; local files take no split."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_edit.data.requests import EditRequestError
from lm_edit.paths import DEMO_EDITS

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "LM_EDIT_DATA_DIR"

DEMO_PATH = DEMO_EDITS

KNOWEDIT_HUB_ID = "zjunlp/KnowEdit"

KNOWEDIT_FILES = {
    "ZsRE": "benchmark/ZsRE/ZsRE-test-all.json",
    "wiki_counterfact-train": "benchmark/wiki_counterfact/train_cf.json",
    "wiki_counterfact-test": "benchmark/wiki_counterfact/test_cf.json",
    "wiki_recent-train": "benchmark/wiki_recent/recent_train.json",
    "wiki_recent-test": "benchmark/wiki_recent/recent_test.json",
    "WikiBio-test": "benchmark/WikiBio/wikibio-test-all.json",
    "WikiBio-train": "benchmark/WikiBio/wikibio-train-all.json",
}

BUILTIN_LOCAL = {
    "counterfact": "counterfact/counterfact-edit.json",
    "zsre": "portability/zsre_mend_edit.json",
    "knowedit": "knowedit/benchmark/ZsRE/ZsRE-test-all.json",
    "knowedit_wiki_counterfact": "knowedit/benchmark/wiki_counterfact/test_cf.json",
    "knowedit_wiki_counterfact_train": "knowedit/benchmark/wiki_counterfact/train_cf.json",
    "knowedit_wiki_recent": "knowedit/benchmark/wiki_recent/recent_test.json",
    "knowedit_wiki_recent_train": "knowedit/benchmark/wiki_recent/recent_train.json",
    "knowedit_wikibio": "knowedit/benchmark/WikiBio/wikibio-test-all.json",
    "knowedit_wikibio_train": "knowedit/benchmark/WikiBio/wikibio-train-all.json",
    "mquake": "mquake/MQuAKE-hard.json",
}

# Hub copies of the very same files; a name whose file has no Hub copy (CounterFact's
# EasyEdit split, MEND's ZsRE, MQuAKE) is never replaced by a different dataset.
BUILTIN_HUB = {
    "knowedit": (KNOWEDIT_HUB_ID, "ZsRE"),
    "knowedit_wiki_counterfact": (KNOWEDIT_HUB_ID, "wiki_counterfact-test"),
    "knowedit_wiki_counterfact_train": (KNOWEDIT_HUB_ID, "wiki_counterfact-train"),
    "knowedit_wiki_recent": (KNOWEDIT_HUB_ID, "wiki_recent-test"),
    "knowedit_wiki_recent_train": (KNOWEDIT_HUB_ID, "wiki_recent-train"),
    "knowedit_wikibio": (KNOWEDIT_HUB_ID, "WikiBio-test"),
    "knowedit_wikibio_train": (KNOWEDIT_HUB_ID, "WikiBio-train"),
}

# What to pass instead when a name's own file is missing and only a different Hub dataset
# exists.
NEAREST_HUB = {
    "counterfact": "azhx/counterfact (ROME's release, all 21,919 cases, ROME format)",
    "zsre": "edit_data=knowedit (KnowEdit's ZsRE test set, 1,304 records)",
}

BUILTIN_NAMES = ("demo", *BUILTIN_LOCAL)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

_JSON_WS = re.compile(r"[ \t\n\r]*")

_JSONL_SUFFIXES = {".jsonl", ".ndjson"}

_LOCAL_SUFFIXES = {".json", *_JSONL_SUFFIXES}


@dataclass(frozen=True)
class HubSource:
    hub_id: str
    split: str | None


def _jsonl_records(text: str, path: Path) -> list[tuple[str, Any]]:
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:line {lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise EditRequestError(
                f"{path}:line {lineno}: invalid JSON ({exc.msg}, column {exc.colno})."
            ) from exc
    return records


def _array_items(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` for each element of the top-level JSON array in ``text``."""
    decoder = json.JSONDecoder()
    pos = _JSON_WS.match(text).end()
    if not text.startswith("[", pos):
        raise EditRequestError(
            f"{path}: expected a JSON list of records. Write the records as a list, or one "
            "per line in a .jsonl file."
        )
    pos = _JSON_WS.match(text, pos + 1).end()
    while not text.startswith("]", pos):
        value, end = decoder.raw_decode(text, pos)
        yield pos, value
        pos = _JSON_WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _JSON_WS.match(text, pos + 1).end()
            if text.startswith("]", pos):
                raise json.JSONDecodeError("Expecting value after ','", text, pos)
        elif not text.startswith("]", pos):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    end = pos + 1
    if _JSON_WS.match(text, end).end() != len(text):
        raise json.JSONDecodeError("Extra data after the list", text, end)


def _json_list_records(text: str, path: Path) -> list[tuple[str, Any]]:
    records = []
    line, last = 1, 0
    try:
        for index, (offset, value) in enumerate(_array_items(text, path)):
            line += text.count("\n", last, offset)
            last = offset
            records.append((f"{path}:record {index} (line {line})", value))
    except json.JSONDecodeError as exc:
        raise EditRequestError(
            f"{path}:line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})."
        ) from exc
    return records


def read_local(path: Path) -> list[tuple[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"Edit data file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"Edit data file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "edit data must be a .json list or a .jsonl file of records."
        ) from None
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return _jsonl_records(text, path)
    return _json_list_records(text, path)


def _hub_kwargs(hub_id: str, split: str | None) -> dict[str, Any]:
    if hub_id != KNOWEDIT_HUB_ID:
        return {"split": split}
    name = split or "ZsRE"
    if name not in KNOWEDIT_FILES:
        raise ValueError(
            f"split={name!r} is not a KnowEdit benchmark file; choose one of "
            f"{sorted(KNOWEDIT_FILES)}."
        )
    return {"data_files": KNOWEDIT_FILES[name], "split": "train"}


def read_hub(hub_id: str, split: str | None, label: str) -> tuple[list[tuple[str, Any]], str]:
    """Records of a Hub dataset and the stem for generated case ids."""
    import datasets as hf_datasets

    kwargs = _hub_kwargs(hub_id, split)
    logger.info("%s: loading %s from the Hugging Face Hub (%s)", label, hub_id, kwargs)
    try:
        data = hf_datasets.load_dataset(hub_id, **kwargs)
    except OSError as exc:
        raise ConnectionError(
            f"Could not load {hub_id!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Working offline? Pass a local path instead (a .json list or .jsonl file), or set "
            f"${DATA_DIR_ENV} to a folder with the built-in data files."
        ) from exc
    if isinstance(data, hf_datasets.DatasetDict):
        if len(data) != 1:
            raise ValueError(f"{hub_id} has splits {sorted(data)}; pass split=... to pick one.")
        split, data = next(iter(data.items()))
    part = kwargs.get("data_files", split)
    stem = Path(part).stem if "data_files" in kwargs else hub_id.split("/")[-1]
    return [(f"{hub_id}[{part}]:record {i}", row) for i, row in enumerate(data.to_list())], stem


def hub_revision(hub_id: str) -> str | None:
    """The commit of ``hub_id`` that the Hub serves now (``None`` when it cannot be asked,
    e.g. offline: the datasets cache then served the data)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(hub_id).sha
    except Exception as exc:  # noqa: BLE001 - provenance is best effort, never fatal
        logger.info("edit_data: could not read the revision of %s (%s)", hub_id, exc)
        return None


def _resolve_builtin(name: str) -> Path | HubSource:
    if name == "demo":
        return DEMO_PATH
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        local = Path(data_dir).expanduser() / BUILTIN_LOCAL[name]
        if local.is_file():
            logger.info("edit_data=%s: using %s ($%s)", name, local, DATA_DIR_ENV)
            return local
        if name in BUILTIN_HUB:
            logger.warning("edit_data=%s: %s does not exist; using the Hub copy", name, local)
    if name not in BUILTIN_HUB:
        nearest = NEAREST_HUB.get(name)
        alternative = f" A different dataset on the Hub: {nearest}." if nearest else ""
        raise FileNotFoundError(
            f"edit_data={name} is the file {BUILTIN_LOCAL[name]}, which has no Hub copy; set "
            f"${DATA_DIR_ENV} to a folder holding it, or pass the file's path.{alternative}"
        )
    hub_id, split = BUILTIN_HUB[name]
    return HubSource(hub_id, split)


def resolve(spec: str) -> Path | HubSource:
    if spec in BUILTIN_NAMES:
        return _resolve_builtin(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.exists() or path.suffix.lower() in _LOCAL_SUFFIXES:
        raise FileNotFoundError(f"Edit data file {spec!r} does not exist or is not a file.")
    if _HUB_ID.match(spec):
        return HubSource(spec, None)
    raise ValueError(
        f"edit_data={spec!r} is neither a built-in name ({', '.join(BUILTIN_NAMES)}), an "
        "existing .json/.jsonl file, nor a Hugging Face Hub dataset id 'org/name'."
    )
