"""Free-generation metrics of CounterFact (ROME, Meng et al., 2022): generation entropy
(GE, fluency) and reference score (RS, consistency).

* GE of a text: ``mean(2/3 * H2, 4/3 * H3)`` where ``Hn`` is the entropy (bits) of the
  text's word n-gram frequency distribution; a case's GE is the mean over its
  generations, the task's the mean over cases. Words are ``\\w+`` runs and single
  punctuation marks (ROME uses ``nltk.word_tokenize``, which also splits contractions).
  A text with no n-grams of a size contributes 0 for that size.
* RS of a case: cosine similarity of the TF-IDF vectors of (all its generations joined
  with spaces) and (all Wikipedia snippets about the new object's relation and id joined),
  with ROME's fixed vocabulary and IDF table. TF-IDF is scikit-learn's
  ``TfidfVectorizer`` default: lower-cased ``\\b\\w\\w+\\b`` tokens, raw counts times IDF.

RS needs ROME's data release in one folder: ``attribute_snippets.json`` (a list of
``{"relation_id", "target_id", "samples": [{"text", ...}]}``), ``tfidf_vocab.json``
(``{term: column}``) and ``idf.npy`` (IDF per column). Name it with
``--metadata '{"reference_data": "<dir>"}'`` or ``$LM_EDIT_REFERENCE_DATA``;
without it RS is skipped and the log says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

REFERENCE_ENV = "LM_EDIT_REFERENCE_DATA"
REFERENCE_FILES = ("attribute_snippets.json", "tfidf_vocab.json", "idf.npy")
_WORD = re.compile(r"\w+|[^\w\s]")
_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def ngram_entropy(text: str, n: int) -> float:
    """Entropy in bits of the word n-gram frequency distribution of ``text``."""
    words = _WORD.findall(text)
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def generation_entropy(text: str) -> float:
    """ROME's weighted bi/tri-gram entropy of one generation."""
    return (2 / 3 * ngram_entropy(text, 2) + 4 / 3 * ngram_entropy(text, 3)) / 2


def mean_per_case(items: list[tuple[str, float]]) -> float:
    """Mean over cases of each case's mean value (ROME's per-case averaging)."""
    per_case: dict[str, list[float]] = defaultdict(list)
    for case, value in items:
        per_case[case].append(value)
    means = [sum(v) / len(v) for v in per_case.values()]
    return sum(means) / len(means) if means else 0.0


@dataclass(frozen=True)
class ReferenceData:
    """ROME's snippets and TF-IDF table."""

    snippets: dict[tuple[str, str], list[str]]
    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceData:
        """Read the three files of ROME's release from ``folder``."""
        folder = Path(folder)
        missing = [name for name in REFERENCE_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"Reference-score data folder {folder} lacks {', '.join(missing)} (ROME's data "
                "release: attribute_snippets.json, tfidf_vocab.json, idf.npy)."
            )
        snippets: dict[tuple[str, str], list[str]] = defaultdict(list)
        for entry in json.loads((folder / "attribute_snippets.json").read_text("utf-8")):
            key = (str(entry["relation_id"]), str(entry["target_id"]))
            snippets[key] += [sample["text"] for sample in entry["samples"]]
        vocabulary = json.loads((folder / "tfidf_vocab.json").read_text("utf-8"))
        idf = np.load(folder / "idf.npy")
        if len(idf) < len(vocabulary):
            raise ValueError(
                f"{folder}: idf.npy has {len(idf)} entries for {len(vocabulary)} terms."
            )
        return cls(dict(snippets), vocabulary, idf)

    def vector(self, text: str) -> np.ndarray:
        """TF-IDF vector of ``text`` over the fixed vocabulary."""
        out = np.zeros(len(self.idf))
        for token in _TFIDF_TOKEN.findall(text.lower()):
            column = self.vocabulary.get(token)
            if column is not None:
                out[column] += 1
        return out * self.idf

    def similarity(self, text_a: str, text_b: str) -> float:
        """Cosine similarity of the two texts' TF-IDF vectors (0 when one is empty)."""
        a, b = self.vector(text_a), self.vector(text_b)
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(a @ b) / norm if norm else 0.0


@lru_cache(maxsize=4)
def load_reference(folder: str) -> ReferenceData:
    """:meth:`ReferenceData.load`, cached per folder."""
    return ReferenceData.load(folder)


def reference_folder(metadata: dict[str, Any]) -> str | None:
    """The reference-data folder from ``reference_data=`` or ``$LM_EDIT_REFERENCE_DATA``."""
    folder = metadata.get("reference_data") or os.environ.get(REFERENCE_ENV)
    return str(folder) if folder else None


def reference_score(items: list[tuple[str, str, str, str]]) -> float:
    """RS aggregation: items are ``(case_id, generation, reference folder, snippet key)``;
    each case's generations are joined and compared with its joined snippets."""
    texts: dict[str, list[str]] = defaultdict(list)
    where: dict[str, tuple[str, str]] = {}
    for case, generation, folder, key in items:
        texts[case].append(generation)
        where[case] = (folder, key)
    scores = []
    for case, generations in texts.items():
        folder, key = where[case]
        data = load_reference(folder)
        reference = " ".join(data.snippets.get(tuple(key.split("|", 1)), []))
        scores.append(data.similarity(" ".join(generations), reference))
    return sum(scores) / len(scores) if scores else 0.0
