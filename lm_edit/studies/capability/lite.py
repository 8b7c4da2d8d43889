"""``edit_capability_lite``: a fixed subsample of about 100 items per benchmark.

The items are chosen by a rule that depends only on each item's stable id (its own id
field, or a hash of its text where the release has none): within every stratum (MMLU
subject, BBH task, MATH subject, C3 config, TyDiQA language) keep the ``k`` ids with the
smallest ``blake2b(salt:benchmark:id)``. The rule was run once on the local copies and its
output is recorded in ``tasks/capability/lite_ids.json``; the task filters keep exactly
those ids, so the subsample is the same on every machine and lm-eval version. TyDiQA is
not available here, so its ids are not recorded: the same rule runs at load time.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from lm_edit.paths import tasks_dir

SALT = "lm-edit-lite-v1"
PER_STRATUM = {
    "mmlu": 2,
    "bbh": 4,
    "math": 15,
    "mbpp": 100,
    "commonsense_qa": 100,
    "c3": 50,
    "axb": 100,
    "tydiqa": 11,
}
"""Items kept per stratum: 57x2, 27x4, 7x15, 100, 100, 2x50, 100 and 9x11."""

AXB_SIZE = 1104
"""AX-b's test split holds idx 0..1103, so its ids can be chosen without the data."""


def lite_ids_path() -> Path:
    """Where the recorded ids live (``tasks/capability/lite_ids.json``)."""
    return tasks_dir() / "capability" / "lite_ids.json"


def text_hash(*parts: str) -> str:
    """A short stable hash of some text fields (ids for items that have none)."""
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=6).hexdigest()


DOC_IDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "mmlu": lambda d: f"{d['subject']}/{text_hash(d['question'], *d['choices'])}",
    "bbh": lambda d: text_hash(d["input"]),
    "math": lambda d: f"{d['type']}/{text_hash(d['problem'])}",
    "mbpp": lambda d: str(d["task_id"]),
    "commonsense_qa": lambda d: str(d["id"]),
    "c3": lambda d: text_hash(d["context"], d["question"], *d["choices"]),
    "axb": lambda d: str(d["idx"]),
    "tydiqa": lambda d: str(d["id"]),
}
"""Benchmark -> the stable id of one doc (as the task's ``process_docs`` receives it)."""

EVAL_SPLITS = {
    "mmlu": "test",
    "bbh": "test",
    "math": "test",
    "mbpp": "test",
    "commonsense_qa": "validation",
    "c3": "test",
    "axb": "test",
    "tydiqa": "validation",
}


def choose(ids: Iterable[str], benchmark: str, k: int) -> list[str]:
    """The ``k`` ids with the smallest salted hash (all of them if fewer), sorted."""

    def rank(item: str) -> str:
        return hashlib.blake2b(f"{SALT}:{benchmark}:{item}".encode(), digest_size=8).hexdigest()

    return sorted(sorted(set(ids), key=rank)[:k])


def choose_stratified(docs: Iterable[tuple[str, str]], benchmark: str) -> list[str]:
    """Apply :func:`choose` within each stratum of ``(stratum, id)`` pairs."""
    strata: dict[str, list[str]] = defaultdict(list)
    for stratum, doc_id in docs:
        strata[stratum].append(doc_id)
    k = PER_STRATUM[benchmark]
    return sorted(i for ids in strata.values() for i in choose(ids, benchmark, k))


@cache
def recorded_ids() -> dict[str, frozenset[str]]:
    """The recorded subsample, benchmark -> ids."""
    path = lite_ids_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; recreate it with `lm-edit lite-ids`.")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: frozenset(entry["ids"]) for name, entry in data["benchmarks"].items()}


def _split_of(dataset: Any) -> str | None:
    split = getattr(dataset, "split", None)
    return str(split) if split is not None else None


def keep_recorded(dataset: Any, benchmark: str) -> Any:
    """Rows of the evaluation split whose id was recorded; other splits unchanged.

    Raises:
        ValueError: the split has rows but none of them was recorded (a different
            release of the data).
    """
    if _split_of(dataset) not in (None, EVAL_SPLITS[benchmark]):
        return dataset
    ids = recorded_ids()[benchmark]
    doc_id = DOC_IDS[benchmark]
    kept = dataset.filter(lambda doc: doc_id(doc) in ids)
    if len(dataset) and not len(kept):
        raise ValueError(
            f"None of the {len(dataset)} {benchmark} rows is in the recorded lite subsample "
            f"({lite_ids_path()}): the data is not the release the ids were taken from."
        )
    return kept


def keep_by_rule(dataset: Any, benchmark: str) -> Any:
    """Rows chosen by the rule itself (for benchmarks whose ids are not recorded)."""
    doc_id = DOC_IDS[benchmark]
    ids = set(choose((doc_id(d) for d in dataset), benchmark, PER_STRATUM[benchmark]))
    return dataset.filter(lambda doc: doc_id(doc) in ids)


def mmlu(dataset: Any) -> Any:
    """``process_docs`` for every MMLU subject (the dev split keeps all five exemplars)."""
    return keep_recorded(dataset, "mmlu")


def bbh(dataset: Any) -> Any:
    """``process_docs`` for every BBH task."""
    return keep_recorded(dataset, "bbh")


def math(dataset: Any) -> Any:
    """``process_docs`` for the MATH subjects: the subsample, then Minerva's processing."""
    from lm_edit.studies.capability import minerva

    return minerva.process_docs(keep_recorded(dataset, "math"))


def mbpp(dataset: Any) -> Any:
    """``process_docs`` for MBPP's test split."""
    return keep_recorded(dataset, "mbpp")


def commonsense_qa(dataset: Any) -> Any:
    """``process_docs`` for the generative CommonsenseQA (the exemplars stay excluded)."""
    from lm_edit.studies.capability.commonsense_qa import scored

    return keep_recorded(scored(dataset), "commonsense_qa")


def c3(dataset: Any) -> Any:
    """``process_docs`` for C3: one doc per question, then the subsample."""
    from lm_edit.studies.capability.c3 import process_docs

    return keep_recorded(process_docs(dataset), "c3")


def axb(dataset: Any) -> Any:
    """``process_docs`` for AX-b."""
    return keep_recorded(dataset, "axb")


def _tydiqa(language: str) -> Callable[[Any], Any]:
    def process_docs(dataset: Any) -> Any:
        from lm_eval.tasks.tydiqa import utils

        if _split_of(dataset) not in (None, EVAL_SPLITS["tydiqa"]):
            return utils.process_docs_lang(dataset, language)
        rows = dataset.filter(_in_language(language))
        if not len(rows):
            raise ValueError(f"TyDiQA: this copy has no {language} rows (ids '{language}-...').")
        keep = keep_recorded if "tydiqa" in recorded_ids() else keep_by_rule
        chosen = keep(rows, "tydiqa")
        return utils.process_docs_lang(chosen, language)

    process_docs.__doc__ = f"``process_docs`` for TyDiQA GoldP, {language}."
    return process_docs


def _in_language(language: str) -> Callable[[dict[str, Any]], bool]:
    return lambda doc: doc["id"].startswith(f"{language}-")


tydiqa_ar = _tydiqa("arabic")
tydiqa_bn = _tydiqa("bengali")
tydiqa_en = _tydiqa("english")
tydiqa_fi = _tydiqa("finnish")
tydiqa_id = _tydiqa("indonesian")
tydiqa_ko = _tydiqa("korean")
tydiqa_ru = _tydiqa("russian")
tydiqa_sw = _tydiqa("swahili")
tydiqa_te = _tydiqa("telugu")


def _stratum(benchmark: str, config: str, row: dict[str, Any]) -> str:
    """TyDiQA strata are languages (the id prefix); the others' are Hub configs."""
    return row["id"].split("-")[0] if benchmark == "tydiqa" else config


def record(source: Path) -> dict[str, Any]:
    """Run the rule on the local copies in ``source`` (the layout of
    :func:`lm_edit.studies.capability.offline.build_offline_cache`) and return the record that
    ``lite_ids.json`` holds. AX-b ids come from its documented index range; TyDiQA is
    recorded only when its copy is present."""
    from lm_edit.studies.capability import offline
    from lm_edit.studies.capability.c3 import flatten
    from lm_edit.studies.capability.commonsense_qa import N_EXEMPLARS

    benchmarks: dict[str, Any] = {}
    for name, benchmark in offline.BENCHMARKS.items():
        path = Path(source) / benchmark.source
        if name == "axb":
            ids = choose(map(str, range(AXB_SIZE)), name, PER_STRATUM[name])
            benchmarks[name] = {"split": "test", "source": f"idx 0..{AXB_SIZE - 1}", "ids": ids}
            continue
        if not path.exists():
            continue
        pairs = []
        for config in benchmark.read(path):
            rows = config.splits[EVAL_SPLITS[name]]
            if name == "c3":
                rows = [doc for row in rows for doc in flatten(**row)]
            if name == "commonsense_qa":
                rows = rows[N_EXEMPLARS:]
            pairs += [(_stratum(name, config.config, r), DOC_IDS[name](r)) for r in rows]
        benchmarks[name] = {
            "split": EVAL_SPLITS[name],
            "source": str(benchmark.source),
            "ids": choose_stratified(pairs, name),
        }
    return {
        "salt": SALT,
        "rule": "per stratum, the k ids with the smallest blake2b(salt:benchmark:id)",
        "per_stratum": PER_STRATUM,
        "benchmarks": benchmarks,
    }
