r"""Edit-data loaders: CounterFact, ZsRE, KnowEdit and our own JSONL, as ``EditRequest`` lists.

``load_edit_requests(spec)`` accepts a built-in name, a local file (a ``.json`` list of records
or a ``.jsonl`` file with one record per line) or a Hugging Face Hub dataset id (``org/name``).
The format is detected from the first record and logged at INFO level.

Built-in names. With ``$LM_EDIT_DATA_DIR`` set (a folder laid out like ``shared/data``) and the
name's local file present there, that file is used; otherwise the Hub copy is loaded:

============ =============================================== =================================
name         local file (under ``$LM_EDIT_DATA_DIR``)        Hub fallback
============ =============================================== =================================
demo         ``lm_edit/data/demo_edits.jsonl`` (shipped      none
             with the package; our own JSONL schema)
counterfact  ``counterfact/counterfact-edit.json``           ``azhx/counterfact``, split
             (EasyEdit flat format, 10,000 records)          ``train+test`` (ROME format,
                                                             21,919 records)
zsre         ``portability/zsre_mend_edit.json``             ``zjunlp/KnowEdit`` ``ZsRE``:
             (MEND format with one-hop portability,          a different record set (1,304),
             1,037 records)                                  logged as a warning
knowedit     ``knowedit/benchmark/ZsRE/ZsRE-test-all.json``  ``zjunlp/KnowEdit`` ``ZsRE``
             (KnowEdit format, 1,304 records)
knowedit_\   ``knowedit/benchmark/wiki_counterfact/``         ``zjunlp/KnowEdit``
wiki_\       ``train_cf.json`` (1,428 records)                ``wiki_counterfact-train``
counterfact
knowedit_\   ``knowedit/benchmark/wiki_recent/``              ``zjunlp/KnowEdit``
wiki_recent  ``recent_train.json`` (570 records)              ``wiki_recent-train``
knowedit_\   ``knowedit/benchmark/WikiBio/``                  ``zjunlp/KnowEdit``
wikibio      ``wikibio-test-all.json`` (306 records)          ``WikiBio-test``
mquake       ``mquake/MQuAKE-hard.json`` (429 four-hop         none (GitHub only)
             cases, 1,716 rewrites)
============ =============================================== =================================

For ``zjunlp/KnowEdit`` the ``split`` argument names the benchmark file (see ``KNOWEDIT_FILES``;
default ``ZsRE``). For other Hub ids it is the ``datasets`` split; local files take no split.

Formats (detection rules, checked in this order on the first record's keys):

* KnowEdit WikiBio (``text``, ``labels``, ``concept``): hallucination correction; the passage
  ``text`` is the prompt, ``concept`` (the person, named in the passage) the subject and
  the corrected sentence ``labels`` the target; locality from ``locality``.
* MQuAKE (``requested_rewrite`` is a list): one request per rewrite, each remembering its
  case (see :mod:`lm_edit.mquake`); ``select_requests`` keeps a case's rewrites together.
* CounterFact, ROME format (``requested_rewrite`` is an object).
* ZsRE, MEND format (``src`` and ``alt``); locality prompts keep MEND's ``nq question:`` prefix.
* KnowEdit (``prompt``, ``subject``, ``target_new`` and a ``locality``/``portability`` object).
* EasyEdit flat format (``prompt``, ``subject``, ``target_new`` and any of ``ground_truth``,
  ``rephrase_prompt``, ``locality_prompt``, ...): labelled ZsRE when the locality prompt starts
  with ``nq question:``, else CounterFact.
* Our own schema (``prompt``, ``subject``, ``target_new``; like ``EditRequest.to_dict``).

Normalisation: text is stripped of surrounding whitespace; ground truths may be strings or
(nested) lists, whose first string is the answer and the rest its aliases. A probe without any
answer and an empty ground truth are left out and logged as a warning. Keys a format does not
map are kept in ``EditRequest.extra``, with ``extra["format"]`` naming the detected format.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_edit.mquake import mquake_requests
from lm_edit.requests import EditRequest, EditRequestError, Probe

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "LM_EDIT_DATA_DIR"
DEMO_PATH = Path(__file__).parent / "data" / "demo_edits.jsonl"
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
    "knowedit_wiki_counterfact": "knowedit/benchmark/wiki_counterfact/train_cf.json",
    "knowedit_wiki_recent": "knowedit/benchmark/wiki_recent/recent_train.json",
    "knowedit_wikibio": "knowedit/benchmark/WikiBio/wikibio-test-all.json",
    "mquake": "mquake/MQuAKE-hard.json",
}
BUILTIN_HUB = {
    "counterfact": ("azhx/counterfact", "train+test"),
    "zsre": (KNOWEDIT_HUB_ID, "ZsRE"),
    "knowedit": (KNOWEDIT_HUB_ID, "ZsRE"),
    "knowedit_wiki_counterfact": (KNOWEDIT_HUB_ID, "wiki_counterfact-train"),
    "knowedit_wiki_recent": (KNOWEDIT_HUB_ID, "wiki_recent-train"),
    "knowedit_wikibio": (KNOWEDIT_HUB_ID, "WikiBio-test"),
}
BUILTIN_NAMES = ("demo", *BUILTIN_LOCAL)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_LOCAL_SUFFIXES = {".json", *_JSONL_SUFFIXES}
_MAX_LISTED = 10
_ABSENT = object()


@dataclass(frozen=True)
class _HubSource:
    hub_id: str
    split: str | None


@dataclass
class _Record:
    """One raw record, where it came from, and what converting it added or left out."""

    data: Mapping[str, Any]
    where: str
    notes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, message: str) -> EditRequestError:
        return EditRequestError(f"{self.where}: {message}")

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def _value(self, name: str, value: Any) -> Any:
        return self.data.get(name) if value is _ABSENT else value

    def text(self, name: str, value: Any = _ABSENT) -> str:
        """A required non-empty string, stripped."""
        value = self._value(name, value)
        if value is None:
            raise self.error(f"field '{name}' is missing.")
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"field '{name}' must be a non-empty string, got {value!r}.")
        return value.strip()

    def texts(self, name: str, value: Any = _ABSENT) -> tuple[str, ...]:
        """An optional string or list of strings, as a tuple."""
        value = self._value(name, value)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        return tuple(self.text(f"{name}[{i}]", item) for i, item in enumerate(items))

    def mapping(self, name: str, value: Any = _ABSENT) -> Mapping[str, Any]:
        """An optional JSON object (absent gives an empty one)."""
        value = self._value(name, value)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(f"field '{name}' must be an object, got {value!r}.")
        return value

    def items(self, name: str, value: Any = _ABSENT) -> list[Any]:
        """An optional JSON list (absent gives an empty one)."""
        value = self._value(name, value)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"field '{name}' must be a list, got {value!r}.")
        return value

    def answers(self, name: str, value: Any = _ABSENT) -> list[str]:
        """A ground truth (string or nested lists of strings) as distinct non-empty strings."""
        answers: list[str] = []
        for item in _flatten(self._value(name, value)):
            if not isinstance(item, str):
                raise self.error(f"field '{name}' must hold strings, got {item!r}.")
            if item.strip() and item.strip() not in answers:
                answers.append(item.strip())
        return answers

    def truth(self, name: str, value: Any = _ABSENT) -> str | None:
        """The old answer: first of the ground truths, the others kept as aliases in extra."""
        value = self._value(name, value)
        answers = self.answers(name, value)
        if value is not None and not answers:
            self.notes.append(f"{self.where}: '{name}' is empty; target_true left unset")
        if len(answers) > 1:
            self.extra["target_true_aliases"] = answers[1:]
        return answers[0] if answers else None

    def probe(self, name: str, prompt: Any, answer: Any, category: str) -> Probe | None:
        """One probe; ``None`` (and a note) when it has no answer."""
        text = self.text(f"{name}.prompt", prompt)
        answers = self.answers(f"{name}.answer", answer)
        if not answers:
            self.notes.append(f"{self.where}: {name} probe {text!r} has no answer; left out")
            return None
        return Probe(text, answers[0], category, tuple(answers[1:]))

    def paired_probes(self, name: str, prompts: Any, answers: Any, category: str) -> list[Probe]:
        """Probes from parallel prompt/answer fields (EasyEdit's flat ``*_prompt`` fields)."""
        if prompts is None:
            return []
        if not isinstance(prompts, list):
            return _kept([self.probe(name, prompts, answers, category)])
        if len(prompts) == 1:
            return _kept([self.probe(name, prompts[0], answers, category)])
        if not isinstance(answers, list) or len(answers) != len(prompts):
            raise self.error(
                f"'{name}' has {len(prompts)} prompts but its ground truth does not list "
                "one answer per prompt."
            )
        pairs = zip(prompts, answers, strict=True)
        return _kept(self.probe(name, prompt, answer, category) for prompt, answer in pairs)

    def grouped_probes(self, name: str) -> list[Probe]:
        """Probes from KnowEdit's ``{category: [{prompt, ground_truth}]}`` objects."""
        probes: list[Probe | None] = []
        for category, entries in self.mapping(name).items():
            for i, entry in enumerate(self.items(f"{name}.{category}", entries)):
                entry = self.mapping(f"{name}.{category}[{i}]", entry)
                probes.append(
                    self.probe(
                        f"{name}.{category}[{i}]",
                        entry.get("prompt"),
                        entry.get("ground_truth"),
                        category,
                    )
                )
        return _kept(probes)

    def listed_probes(self, name: str) -> list[Probe]:
        """Probes from our own ``[{prompt, answer, category?, aliases?}]`` lists."""
        probes: list[Probe | None] = []
        for i, entry in enumerate(self.items(name)):
            entry = self.mapping(f"{name}[{i}]", entry)
            answers = [entry.get("answer"), entry.get("aliases")]
            category = entry.get("category") or ""
            if not isinstance(category, str):
                raise self.error(f"field '{name}[{i}].category' must be a string.")
            probes.append(self.probe(f"{name}[{i}]", entry.get("prompt"), answers, category))
        return _kept(probes)


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield value


def _kept(probes: Iterator[Probe | None] | Sequence[Probe | None]) -> list[Probe]:
    return [probe for probe in probes if probe is not None]


def _from_own(rec: _Record) -> dict[str, Any]:
    rec.extra.update(rec.mapping("extra"))
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("target_true"),
        "rephrases": rec.texts("rephrases"),
        "locality": tuple(rec.listed_probes("locality")),
        "portability": tuple(rec.listed_probes("portability")),
    }


def _one_hop(rec: _Record) -> list[Probe | None]:
    """The one-hop portability probe (``portability: {New Question, New Answer}``)."""
    portability = rec.mapping("portability")
    if not portability:
        return []
    if portability.get("Recalled Relation") is not None:
        rec.extra["recalled_relation"] = portability["Recalled Relation"]
    question, answer = portability.get("New Question"), portability.get("New Answer")
    return [rec.probe("portability", question, answer, "one_hop")]


def _zsre_portability(rec: _Record) -> list[Probe]:
    """One-hop, subject-replace (``alter_subject_question``, answered by the new target)
    and inverse-relation (``inverse question``, answered by the subject) probes of the
    EasyEdit portability files in MEND format."""
    probes = _one_hop(rec)
    if rec.get("alter_subject_question") is not None:
        probes.append(
            rec.probe(
                "alter_subject_question",
                rec.get("alter_subject_question"),
                rec.get("alt"),
                "subject_replace",
            )
        )
    if rec.get("inverse question") is not None:
        probes.append(
            rec.probe(
                "inverse question",
                rec.get("inverse question"),
                rec.get("subject"),
                "inverse_relation",
            )
        )
    return _kept(probes)


def _from_zsre_mend(rec: _Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("src"),
        "subject": rec.text("subject"),
        "target_new": rec.text("alt"),
        "target_true": rec.truth("answers"),
        "rephrases": rec.texts("rephrase"),
        "locality": tuple(rec.paired_probes("loc", rec.get("loc"), rec.get("loc_ans"), "NQ")),
        "portability": tuple(_zsre_portability(rec)),
    }


def _from_counterfact_rome(rec: _Record) -> dict[str, Any]:
    rewrite = rec.mapping("requested_rewrite")
    template = rec.text("requested_rewrite.prompt", rewrite.get("prompt"))
    if template.count("{}") != 1:
        raise rec.error(f"'requested_rewrite.prompt' must contain '{{}}' once, got {template!r}.")
    subject = rec.text("requested_rewrite.subject", rewrite.get("subject"))
    target_new = rec.mapping("requested_rewrite.target_new", rewrite.get("target_new"))
    target_true = rec.mapping("requested_rewrite.target_true", rewrite.get("target_true"))
    truth = rec.truth("requested_rewrite.target_true.str", target_true.get("str"))
    if rewrite.get("relation_id") is not None:
        rec.extra["relation_id"] = rewrite["relation_id"]
    if target_new.get("id") is not None:
        rec.extra["target_new_id"] = target_new["id"]
    target = rec.text("requested_rewrite.target_new.str", target_new.get("str"))
    probes = _one_hop(rec)
    if rec.get("alternative_subject") is not None:
        alias = rec.text("alternative_subject")
        probes.append(
            rec.probe(
                "alternative_subject", template.replace("{}", alias), target, "subject_replace"
            )
        )
    neighbours = rec.texts("neighborhood_prompts")
    return {
        "prompt": template.replace("{}", subject),
        "subject": subject,
        "target_new": target,
        "target_true": truth,
        "rephrases": rec.texts("paraphrase_prompts"),
        "locality": tuple(
            _kept(rec.probe("neighborhood_prompts", p, truth, "neighborhood") for p in neighbours)
        ),
        "portability": tuple(_kept(probes)),
    }


def _from_easyedit_flat(rec: _Record) -> dict[str, Any]:
    loc_prompts = rec.get("locality_prompt")
    nq = isinstance(loc_prompts, str) and loc_prompts.startswith("nq question:")
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("ground_truth"),
        "rephrases": rec.texts("rephrase_prompt"),
        "locality": tuple(
            rec.paired_probes(
                "locality",
                loc_prompts,
                rec.get("locality_ground_truth"),
                "NQ" if nq else "neighborhood",
            )
        ),
        "portability": tuple(
            rec.paired_probes(
                "portability",
                rec.get("portability_prompt"),
                rec.get("portability_ground_truth"),
                "portability",
            )
        ),
    }


def _from_wikibio(rec: _Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("text"),
        "subject": rec.text("concept"),
        "target_new": rec.text("labels"),
        "locality": tuple(rec.grouped_probes("locality")),
    }


def _from_knowedit(rec: _Record) -> dict[str, Any]:
    return {
        "prompt": rec.text("prompt"),
        "subject": rec.text("subject"),
        "target_new": rec.text("target_new"),
        "target_true": rec.truth("ground_truth"),
        "rephrases": rec.texts("rephrase_prompt"),
        "locality": tuple(rec.grouped_probes("locality")),
        "portability": tuple(rec.grouped_probes("portability")),
    }


@dataclass(frozen=True)
class _Format:
    key: str
    label: str
    keys: frozenset[str]
    convert: Callable[[_Record], dict[str, Any]] | None = None
    expand: Callable[[Any, str, str], list[EditRequest]] | None = None


_FLAT_KEYS = frozenset(
    {
        "prompt",
        "subject",
        "target_new",
        "ground_truth",
        "rephrase_prompt",
        "locality_prompt",
        "locality_ground_truth",
        "portability_prompt",
        "portability_ground_truth",
    }
)
_OWN = _Format(
    "own",
    "lm_edit JSON schema",
    frozenset(
        {"prompt", "subject", "target_new", "target_true", "rephrases"}
        | {"locality", "portability", "extra"}
    ),
    _from_own,
)
_ZSRE_MEND = _Format(
    "zsre_mend",
    "ZsRE (MEND format)",
    frozenset(
        {"src", "alt", "answers", "rephrase", "loc", "loc_ans", "subject", "portability"}
        | {"alter_subject_question", "inverse question"}
    ),
    _from_zsre_mend,
)
_COUNTERFACT_ROME = _Format(
    "counterfact_rome",
    "CounterFact (ROME format)",
    frozenset(
        {"requested_rewrite", "paraphrase_prompts", "neighborhood_prompts"}
        | {"portability", "alternative_subject"}
    ),
    _from_counterfact_rome,
)
_COUNTERFACT_FLAT = _Format(
    "easyedit_flat", "CounterFact (EasyEdit flat format)", _FLAT_KEYS, _from_easyedit_flat
)
_ZSRE_FLAT = _Format(
    "easyedit_flat", "ZsRE (EasyEdit flat format)", _FLAT_KEYS, _from_easyedit_flat
)
_KNOWEDIT = _Format(
    "knowedit",
    "KnowEdit",
    frozenset(
        {"prompt", "subject", "target_new", "ground_truth", "rephrase_prompt"}
        | {"locality", "portability"}
    ),
    _from_knowedit,
)
_WIKIBIO = _Format(
    "wikibio",
    "KnowEdit WikiBio",
    frozenset({"text", "labels", "concept", "locality"}),
    _from_wikibio,
)
_MQUAKE = _Format("mquake", "MQuAKE", frozenset(), expand=mquake_requests)
_FORMAT_SUMMARY = (
    "ZsRE MEND format (src, alt, answers, rephrase, loc, loc_ans, subject); "
    "CounterFact ROME format (case_id, requested_rewrite{prompt, subject, target_new, "
    "target_true}, paraphrase_prompts, neighborhood_prompts); "
    "EasyEdit flat format (prompt, subject, target_new, ground_truth, rephrase_prompt, "
    "locality_prompt, locality_ground_truth); "
    "KnowEdit (prompt, subject, target_new, ground_truth, locality{...}, portability{...}); "
    "lm_edit JSON schema (prompt, subject, target_new, target_true, rephrases, "
    "locality[{prompt, answer}], portability[...])"
)


def _detect_format(first: Mapping[str, Any], label: str) -> _Format:
    """Pick the format from the first record's keys (see the module docstring)."""
    keys = {key for key, value in first.items() if value is not None}
    if {"text", "labels", "concept"} <= keys:
        return _WIKIBIO
    rewrite = first.get("requested_rewrite")
    if isinstance(rewrite, list):
        return _MQUAKE
    if isinstance(rewrite, Mapping):
        return _COUNTERFACT_ROME
    if {"src", "alt"} <= keys:
        return _ZSRE_MEND
    if {"prompt", "subject", "target_new"} <= keys:
        return _detect_prompt_format(first, keys)
    raise EditRequestError(
        f"{label}: unknown edit-data format; the first record has keys {sorted(keys)}. "
        f"Supported formats: {_FORMAT_SUMMARY}."
    )


def _detect_prompt_format(first: Mapping[str, Any], keys: set[str]) -> _Format:
    if any(isinstance(first.get(key), Mapping) for key in ("locality", "portability")):
        return _KNOWEDIT
    if not keys & (_FLAT_KEYS - {"prompt", "subject", "target_new"}):
        return _OWN
    loc = first.get("locality_prompt")
    if isinstance(loc, str) and loc.startswith("nq question:"):
        return _ZSRE_FLAT
    return _COUNTERFACT_FLAT


def _case_id(data: Mapping[str, Any], default: str, where: str) -> str:
    value = data.get("case_id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
        raise EditRequestError(f"{where}: 'case_id' must be a non-empty string or an integer.")
    return str(value).strip()


def _build_request(
    data: Any, where: str, fmt: _Format, default_id: str, notes: list[str]
) -> EditRequest:
    if not isinstance(data, Mapping):
        raise EditRequestError(f"{where}: a record must be a JSON object, got {data!r}.")
    case_id = _case_id(data, default_id, where)
    rec = _Record(data, where, notes)
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
    fmt = _detect_format(first, label)
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


def _read_local(path: Path) -> list[tuple[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"Edit data file {path} does not exist.")
    text = path.read_text(encoding="utf-8-sig")
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


def _read_hub(hub_id: str, split: str | None, label: str) -> tuple[list[tuple[str, Any]], str]:
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


def _resolve_builtin(name: str) -> Path | _HubSource:
    if name == "demo":
        return DEMO_PATH
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        local = Path(data_dir).expanduser() / BUILTIN_LOCAL[name]
        if local.is_file():
            logger.info("edit_data=%s: using %s ($%s)", name, local, DATA_DIR_ENV)
            return local
        logger.warning("edit_data=%s: %s does not exist; using the Hub copy", name, local)
    if name not in BUILTIN_HUB:
        raise FileNotFoundError(
            f"edit_data={name}: no Hub copy exists; set ${DATA_DIR_ENV} to a folder holding "
            f"{BUILTIN_LOCAL[name]}, or pass the file's path (MQuAKE: princeton-nlp/MQuAKE's "
            "datasets/ on GitHub)."
        )
    hub_id, split = BUILTIN_HUB[name]
    if name == "zsre":
        logger.warning(
            "edit_data=zsre: no Hub copy of the MEND-format ZsRE exists; using KnowEdit's ZsRE "
            "test set (%s, 1,304 records), not zsre_mend_edit.json (1,037). Set $%s to use it.",
            hub_id,
            DATA_DIR_ENV,
        )
    return _HubSource(hub_id, split)


def _resolve(spec: str) -> Path | _HubSource:
    if spec in BUILTIN_NAMES:
        return _resolve_builtin(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.exists() or path.suffix.lower() in _LOCAL_SUFFIXES:
        raise FileNotFoundError(f"Edit data file {spec!r} does not exist or is not a file.")
    if _HUB_ID.match(spec):
        return _HubSource(spec, None)
    raise ValueError(
        f"edit_data={spec!r} is neither a built-in name ({', '.join(BUILTIN_NAMES)}), an "
        "existing .json/.jsonl file, nor a Hugging Face Hub dataset id 'org/name'."
    )


def load_edit_requests(
    spec: str, *, split: str | None = None, skip_invalid: bool = False
) -> list[EditRequest]:
    """Load edit requests from a built-in name, a local .json/.jsonl file or a Hub dataset id.

    Every record is converted or reported: invalid records raise one ``EditRequestError``
    listing them all (file and line each), unless ``skip_invalid`` leaves them out, each
    logged as a warning. ``split`` applies to Hub datasets only (see the module docstring).
    """
    source = _resolve(spec)
    if isinstance(source, Path):
        if split is not None:
            raise ValueError(
                f"split={split!r} applies to Hub datasets only; edit_data={spec!r} is the local "
                f"file {source}. Drop split=, or pass a Hub id."
            )
        records, stem = _read_local(source), source.stem
    else:
        records, stem = _read_hub(source.hub_id, split or source.split, f"edit_data={spec}")
    return _convert_all(records, f"edit_data={spec}", stem, skip_invalid)


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
