"""Retrievers that rank stored texts by relevance to a query.

``tfidf`` (the default) is lexical and runs anywhere: TF-IDF vectors (scikit-learn) of
word unigrams and bigrams, cosine similarity. ``sentence-transformers`` embeds with a
named sentence-transformers model (IKE's and EasyEdit's choice, all-MiniLM-L6-v2), which
must be installed and, offline, already in the Hugging Face cache.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch


class RetrieverUnavailableError(RuntimeError):
    """The chosen retriever cannot run here; the message says how to make it available."""


class Retriever(Protocol):
    """Ranks the texts given to :meth:`index` against a query."""

    def index(self, texts: list[str]) -> None:
        """Replace the stored texts."""
        ...

    def scores(self, query: str) -> torch.Tensor:
        """One relevance score per stored text (higher: more relevant)."""
        ...


class TfidfRetriever:
    """Cosine similarity of TF-IDF vectors (lower-cased unigrams and bigrams)."""

    def __init__(self) -> None:
        self._vectorizer = None
        self._matrix = None
        self._count = 0

    def index(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._count = len(texts)
        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        try:
            self._matrix = self._vectorizer.fit_transform(texts)
        except ValueError:  # no words at all: every text is equally relevant
            self._vectorizer = self._matrix = None

    def scores(self, query: str) -> torch.Tensor:
        if self._vectorizer is None:
            return torch.zeros(self._count)
        similarity = self._matrix @ self._vectorizer.transform([query]).T
        return torch.tensor(similarity.toarray()[:, 0], dtype=torch.float64)


class SentenceRetriever:
    """Cosine similarity of sentence-transformers embeddings."""

    def __init__(self, model) -> None:
        self._model = model
        self._embeddings = torch.empty(0)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        vectors = self._model.encode(texts, convert_to_tensor=True, show_progress_bar=False)
        return torch.nn.functional.normalize(vectors.float().cpu(), dim=-1)

    def index(self, texts: list[str]) -> None:
        self._embeddings = self._embed(texts) if texts else torch.empty(0)

    def scores(self, query: str) -> torch.Tensor:
        if not len(self._embeddings):
            return torch.zeros(0)
        return (self._embeddings @ self._embed([query])[0]).double()


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_sentence_model(model_name: str):
    """The sentence-transformers model ``model_name``, loaded without downloading when
    offline; a clear :class:`RetrieverUnavailableError` when it cannot be had."""
    how = (
        f"install it with `pip install sentence-transformers`, fetch the model once while "
        f"online (`hf download {model_name}`, or any run without HF_HUB_OFFLINE=1), or use "
        "retriever=tfidf, which needs neither"
    )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RetrieverUnavailableError(
            f"retriever=sentence-transformers needs the sentence-transformers package and "
            f"the model {model_name!r}: {how}."
        ) from exc
    offline = hub_offline()
    try:
        return SentenceTransformer(model_name, device="cpu", local_files_only=offline)
    except Exception as exc:  # the library raises OSError, ValueError or its own errors
        where = "in the local Hugging Face cache (HF_HUB_OFFLINE=1)" if offline else "anywhere"
        raise RetrieverUnavailableError(
            f"retriever=sentence-transformers: the sentence model {model_name!r} could not be "
            f"loaded {where} ({type(exc).__name__}: {exc}); {how}."
        ) from exc


def make_retrievers(kind: str, model_name: str, count: int) -> list[Retriever]:
    """``count`` retrievers of kind ``kind`` (``tfidf`` or ``sentence-transformers``,
    sharing one loaded sentence model)."""
    if kind == "tfidf":
        return [TfidfRetriever() for _ in range(count)]
    if kind == "sentence-transformers":
        model = load_sentence_model(model_name)
        return [SentenceRetriever(model) for _ in range(count)]
    raise ValueError(f"retriever={kind!r}: use tfidf or sentence-transformers.")
