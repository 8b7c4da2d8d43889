"""Local copies of the capability benchmarks -> the datasets cache that lm-eval reads offline.

lm-eval's stock tasks load Hub ids (``cais/mmlu``, ``SaylorTwift/bbh``, ...). When the Hub
is unreachable, ``datasets.load_dataset`` falls back to its own processed cache,
``<HF_DATASETS_CACHE>/<org>___<name>/<config>/<version>/<hash>/`` (Arrow files plus a
``dataset_info.json``). :func:`build_offline_cache` writes exactly that layout from the
benchmarks' published file formats, in the Hub's row schema, so every task (stock or ours)
runs unchanged offline. Each config is written to a temporary folder and renamed into
place: an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
"""MBPP's standard split by task id (inclusive ranges)."""

C3_CONFIGS = {"dialog": "d", "mixed": "m"}
"""Hub config name -> the letter in the original file names (``c3-d-test.json``)."""

C3_SPLITS = {"test": "test", "validation": "dev", "train": "train"}

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


@dataclass(frozen=True)
class CachedConfig:
    """One Hub dataset config, its rows per split and its features."""

    hub_id: str
    config: str
    splits: dict[str, list[dict[str, Any]]]
    features: Any  # datasets.Features


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark's local copy."""

    name: str
    hub_id: str
    source: str  # path of the local copy, relative to the source folder
    read: Callable[[Path], list[CachedConfig]]


def _features(spec: dict[str, Any]) -> Any:
    import datasets

    return datasets.Features(spec)


def _string() -> Any:
    import datasets

    return datasets.Value("string")


def _list_of(feature: Any) -> Any:
    import datasets

    return datasets.List(feature) if hasattr(datasets, "List") else datasets.Sequence(feature)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: expected {path}, which does not exist.")
    return path


def read_mmlu(folder: Path) -> list[CachedConfig]:
    """MMLU as CSV files ``test/<subject>_test.csv`` and ``dev/<subject>_dev.csv``, with a
    header ``question,choice0..3,answer`` (0-based answer) or the original headerless
    release (answer A-D)."""
    import datasets

    features = _features(
        {
            "question": _string(),
            "subject": _string(),
            "choices": _list_of(_string()),
            "answer": datasets.ClassLabel(names=["A", "B", "C", "D"]),
        }
    )
    tests = sorted(_require(folder / "test", "MMLU test CSVs").glob("*_test.csv"))
    if not tests:
        raise FileNotFoundError(f"MMLU: no *_test.csv files in {folder / 'test'}.")
    configs = []
    for test in tests:
        subject = test.name[: -len("_test.csv")]
        splits = {"test": _mmlu_rows(test, subject)}
        dev = folder / "dev" / f"{subject}_dev.csv"
        if dev.exists():
            splits["dev"] = _mmlu_rows(dev, subject)
        configs.append(CachedConfig("cais/mmlu", subject, splits, features))
    return configs


def _mmlu_rows(path: Path, subject: str) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if rows and rows[0] == ["question", "choice0", "choice1", "choice2", "choice3", "answer"]:
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows, start=1):
        if len(row) != 6:
            raise ValueError(f"{path}, row {number}: expected 6 columns, got {len(row)}.")
        answer = row[5].strip()
        index = "ABCD".index(answer) if answer in ("A", "B", "C", "D") else int(answer)
        out.append({"question": row[0], "subject": subject, "choices": row[1:5], "answer": index})
    return out


def read_bbh(folder: Path) -> list[CachedConfig]:
    """BIG-Bench-Hard as ``<task>.json`` files ``{"examples": [{"input", "target"}]}``."""
    features = _features({"input": _string(), "target": _string()})
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"BBH: no <task>.json files in {folder}.")
    return [
        CachedConfig(
            "SaylorTwift/bbh",
            path.stem,
            {
                "test": [
                    {"input": e["input"], "target": e["target"]}
                    for e in _read_json(path)["examples"]
                ]
            },
            features,
        )
        for path in files
    ]


def read_math(folder: Path) -> list[CachedConfig]:
    """MATH in its release layout, ``test/<subject>/<n>.json`` (and ``train/`` if present)."""
    features = _features(
        {"problem": _string(), "level": _string(), "type": _string(), "solution": _string()}
    )
    configs = []
    for subject in MATH_SUBJECTS:
        splits = {}
        for split in ("test", "train"):
            files = sorted((folder / split / subject).glob("*.json"), key=lambda p: int(p.stem))
            if files:
                splits[split] = [
                    {k: _read_json(p)[k] for k in ("problem", "level", "type", "solution")}
                    for p in files
                ]
        if "test" not in splits:
            raise FileNotFoundError(f"MATH: no test problems in {folder / 'test' / subject}.")
        configs.append(CachedConfig("EleutherAI/hendrycks_math", subject, splits, features))
    return configs


def read_mbpp(path: Path) -> list[CachedConfig]:
    """MBPP's ``mbpp.jsonl``, split by task id as the release defines."""
    import datasets

    features = _features(
        {
            "task_id": datasets.Value("int32"),
            "text": _string(),
            "code": _string(),
            "test_list": _list_of(_string()),
            "test_setup_code": _string(),
            "challenge_test_list": _list_of(_string()),
        }
    )
    rows = _read_jsonl(path)
    splits = {
        split: [r for r in rows if low <= int(r["task_id"]) <= high]
        for split, (low, high) in MBPP_SPLITS.items()
    }
    return [CachedConfig("google-research-datasets/mbpp", "full", splits, features)]


def read_commonsense_qa(folder: Path) -> list[CachedConfig]:
    """CommonsenseQA ``dev_rand_split.jsonl`` (and ``train_rand_split.jsonl``), in the
    original release format or the Hub's row format."""
    features = _features(
        {
            "id": _string(),
            "question": _string(),
            "question_concept": _string(),
            "choices": {"label": _list_of(_string()), "text": _list_of(_string())},
            "answerKey": _string(),
        }
    )
    splits = {}
    for split, name in (
        ("validation", "dev_rand_split.jsonl"),
        ("train", "train_rand_split.jsonl"),
    ):
        if (folder / name).exists():
            splits[split] = [_csqa_row(r) for r in _read_jsonl(folder / name)]
    if "validation" not in splits:
        raise FileNotFoundError(f"CommonsenseQA: expected {folder / 'dev_rand_split.jsonl'}.")
    return [CachedConfig("tau/commonsense_qa", "default", splits, features)]


def _csqa_row(row: dict[str, Any]) -> dict[str, Any]:
    question = row["question"]
    if isinstance(question, dict):  # the original release: question{stem, choices, concept}
        return {
            "id": row["id"],
            "question": question["stem"],
            "question_concept": question.get("question_concept", ""),
            "choices": {
                "label": [c["label"] for c in question["choices"]],
                "text": [c["text"] for c in question["choices"]],
            },
            "answerKey": row.get("answerKey", ""),
        }
    return {k: row[k] for k in ("id", "question", "question_concept", "choices", "answerKey")}


def read_c3(folder: Path) -> list[CachedConfig]:
    """C3's ``c3-{d,m}-{test,dev,train}.json``: ``[[paragraphs], [{question, choice,
    answer}], document_id]`` per document."""
    features = _features(
        {
            "documents": _list_of(_string()),
            "document_id": _string(),
            "questions": {
                "question": _list_of(_string()),
                "answer": _list_of(_string()),
                "choice": _list_of(_list_of(_string())),
            },
        }
    )
    configs = []
    for config, letter in C3_CONFIGS.items():
        splits = {}
        for split, name in C3_SPLITS.items():
            path = folder / f"c3-{letter}-{name}.json"
            if path.exists():
                splits[split] = [_c3_row(record) for record in _read_json(path)]
        if "test" not in splits:
            raise FileNotFoundError(f"C3: expected {folder / f'c3-{letter}-test.json'}.")
        configs.append(CachedConfig("dataset-org/c3", config, splits, features))
    return configs


def _c3_row(record: list[Any]) -> dict[str, Any]:
    paragraphs, questions, document_id = record
    return {
        "documents": list(paragraphs),
        "document_id": str(document_id),
        "questions": {
            "question": [q["question"] for q in questions],
            "answer": [q["answer"] for q in questions],
            "choice": [list(q["choice"]) for q in questions],
        },
    }


def read_axb(folder: Path) -> list[CachedConfig]:
    """SuperGLUE AX-b's ``AX-b.jsonl``: ``{sentence1, sentence2, label, idx}``."""
    import datasets

    features = _features(
        {
            "sentence1": _string(),
            "sentence2": _string(),
            "idx": datasets.Value("int32"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
        }
    )
    names = ("entailment", "not_entailment")
    rows = []
    for row in _read_jsonl(folder / "AX-b.jsonl"):
        label = row["label"]
        if label not in names:
            raise ValueError(f"AX-b idx {row.get('idx')}: label {label!r} is not one of {names}.")
        rows.append(
            {
                "sentence1": row["sentence1"],
                "sentence2": row["sentence2"],
                "idx": int(row["idx"]),
                "label": names.index(label),
            }
        )
    return [CachedConfig("aps/super_glue", "axb", {"test": rows}, features)]


def read_tydiqa(folder: Path) -> list[CachedConfig]:
    """TyDiQA GoldP in its SQuAD-style release (``tydiqa-goldp-v1.1-dev.json``, and
    ``-train.json`` if present)."""
    import datasets

    features = _features(
        {
            "id": _string(),
            "title": _string(),
            "context": _string(),
            "question": _string(),
            "answers": {
                "text": _list_of(_string()),
                "answer_start": _list_of(datasets.Value("int32")),
            },
        }
    )
    splits = {}
    for split, name in (("validation", "dev"), ("train", "train")):
        path = folder / f"tydiqa-goldp-v1.1-{name}.json"
        if path.exists():
            splits[split] = list(_squad_rows(_read_json(path)))
    if "validation" not in splits:
        raise FileNotFoundError(f"TyDiQA: expected {folder / 'tydiqa-goldp-v1.1-dev.json'}.")
    return [CachedConfig("google-research-datasets/tydiqa", "secondary_task", splits, features)]


def _squad_rows(release: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for article in release["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {
                    "id": qa["id"],
                    "title": article.get("title", ""),
                    "context": paragraph["context"],
                    "question": qa["question"],
                    "answers": {
                        "text": [a["text"] for a in qa["answers"]],
                        "answer_start": [int(a["answer_start"]) for a in qa["answers"]],
                    },
                }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("mmlu", "cais/mmlu", "mmlu", read_mmlu),
        Benchmark("bbh", "SaylorTwift/bbh", "bbh", read_bbh),
        Benchmark("math", "EleutherAI/hendrycks_math", "math", read_math),
        Benchmark("mbpp", "google-research-datasets/mbpp", "mbpp/mbpp.jsonl", read_mbpp),
        Benchmark("commonsense_qa", "tau/commonsense_qa", "commonsense_qa", read_commonsense_qa),
        Benchmark("c3", "dataset-org/c3", "c3", read_c3),
        Benchmark("axb", "aps/super_glue", "axb", read_axb),
        Benchmark("tydiqa", "google-research-datasets/tydiqa", "tydiqa", read_tydiqa),
    )
}
"""The eight benchmarks, their Hub ids and where their local copies live."""


def cache_root(cache_dir: Path | None = None) -> Path:
    """The datasets cache folder (``HF_DATASETS_CACHE`` unless ``cache_dir`` is given)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    import datasets.config

    return Path(datasets.config.HF_DATASETS_CACHE).expanduser()


def _config_folder(entry: CachedConfig, cache_dir: Path) -> Path:
    from datasets.naming import camelcase_to_snakecase

    parts = entry.hub_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return cache_dir / "___".join(parts) / entry.config / "0.0.0"


def _fingerprint(entry: CachedConfig) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps(entry.splits, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    digest.update(json.dumps(entry.features.to_dict(), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


BUILT_BY = "Built by lm-edit from a local copy of the published release."


def _built_here(folder: Path) -> bool:
    info = folder / "dataset_info.json"
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("description") == BUILT_BY
    except (OSError, ValueError):
        return False


def write_cached_config(entry: CachedConfig, cache_dir: Path) -> Path:
    """Write one config into the datasets cache; returns its folder.

    An existing folder with the same content fingerprint is reused; earlier lm-edit builds
    of the same config with other content are replaced, anything else (a copy downloaded
    from the Hub) is left alone (the log says which)."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    parent = _config_folder(entry, cache_dir)
    final = parent / _fingerprint(entry)
    if (final / "dataset_info.json").exists():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    dataset_name = parent.parent.parent.name.split("___")[-1]
    staging = Path(tempfile.mkdtemp(prefix=".lm-edit-", dir=parent))
    try:
        infos = {}
        for split, rows in entry.splits.items():
            table = datasets.Dataset.from_list(rows, features=entry.features).data.table
            with ArrowWriter(
                path=str(staging / f"{dataset_name}-{split}.arrow"), features=entry.features
            ) as writer:
                writer.write_table(table)
                count, size = writer.finalize()
            infos[split] = datasets.SplitInfo(
                split, num_bytes=size, num_examples=count, dataset_name=dataset_name
            )
        datasets.DatasetInfo(
            description=BUILT_BY,
            features=entry.features,
            config_name=entry.config,
            dataset_name=dataset_name,
            splits=datasets.SplitDict(infos, dataset_name=dataset_name),
        ).write_to_directory(str(staging))
        for other in (p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if _built_here(other):
                logger.info("replacing %s (other content) with %s", other, final.name)
                shutil.rmtree(other)
            else:
                logger.warning("%s is not lm-edit's; left in place (the newer copy is used)", other)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def build_offline_cache(
    sources: Path | Sequence[Path],
    names: Iterable[str] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, list[Path] | str]:
    """Build the datasets cache for the chosen benchmarks from local copies.

    Args:
        sources: One folder, or several searched in order (the first that holds a
            benchmark's copy is used). A folder holds any of ``mmlu/``, ``bbh/``,
            ``math/``, ``mbpp/mbpp.jsonl``, ``commonsense_qa/``, ``c3/``, ``axb/``,
            ``tydiqa/``.
        names: Benchmarks to build (default: all whose copy is present). A named
            benchmark without a local copy is an error.
        cache_dir: Target datasets cache (default ``HF_DATASETS_CACHE``).

    Returns:
        Benchmark name -> the config folders written, or a string saying why it was
        skipped (only when ``names`` is None).
    """
    folders = [
        Path(s).expanduser() for s in ([sources] if isinstance(sources, (str, Path)) else sources)
    ]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"Source folder {folder} does not exist.")
    root = cache_root(cache_dir)
    requested = list(names) if names is not None else None
    unknown = sorted(set(requested or ()) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}.")
    report: dict[str, list[Path] | str] = {}
    for name in requested or BENCHMARKS:
        benchmark = BENCHMARKS[name]
        found = [f / benchmark.source for f in folders if (f / benchmark.source).exists()]
        if not found:
            where = " or ".join(str(f / benchmark.source) for f in folders)
            if requested is not None:
                raise FileNotFoundError(f"{name}: no local copy at {where}.")
            report[name] = f"skipped: no local copy at {where}"
            continue
        logger.info("%s: reading %s", name, found[0])
        report[name] = [write_cached_config(c, root) for c in benchmark.read(found[0])]
    return report
