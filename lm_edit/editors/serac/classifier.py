"""SERAC's scope classifier: a bi-encoder over the frozen base model.

A text's features are the residual stream after block ``layer`` of the unedited model,
averaged over the text's tokens and layer-normalised (no learned parameters), so the
model's hidden states cost nothing to train and its forward pass stops at ``layer``. A
small trainable MLP maps the features to an embedding, and the log-similarity of a query
to an edit is ``-scale · ‖e(query) − e(edit)‖²`` (the reference's ``square`` distance
with its fixed ``scale`` of 1), so the similarity ``exp(·)`` is in (0, 1] and is 1 for a
query identical to the edit."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lm_edit.atomic import save_bytes
from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.fingerprint import weights_digest
from lm_edit.core.tokens import encode, pad_batch
from lm_edit.core.training import seeded

logger = logging.getLogger(__name__)


class _Enough(Exception):
    """Raised by the feature hook once block ``layer`` has run."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def text_features(
    model: nn.Module,
    tokenizer: Any,
    anatomy: ModelAnatomy,
    layer: int,
    texts: list[str],
    batch_size: int = 32,
) -> torch.Tensor:
    """(len(texts), hidden) float32 features: block ``layer``'s output averaged over each
    text's tokens, layer-normalised. The model runs without gradients and only up to
    ``layer``."""

    def stop(_module, _inputs, output):
        raise _Enough(output[0] if isinstance(output, tuple) else output)

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = []
    handle = anatomy.layer_module(model, layer).register_forward_hook(stop)
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            batch = pad_batch([encode(tokenizer, t) for t in chunk], pad).to(device)
            try:
                with torch.no_grad():
                    model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            except _Enough as done:
                hidden = done.hidden.float()
            else:  # pragma: no cover - the hook always fires
                raise RuntimeError(f"block {layer} did not run")
            mask = batch.attention_mask.to(hidden.device, hidden.dtype)[..., None]
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            rows.append(F.layer_norm(pooled, pooled.shape[-1:]).cpu())
    finally:
        handle.remove()
    return torch.cat(rows)


class FeatureBank:
    """The features of a fixed set of texts, computed once in a fixed order (by length,
    then text), so a run that starts again gets the same bits for every text. With a
    ``cache`` file the bank is read from it when it was made for the same model, layer and
    texts, and written to it (atomically) otherwise."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        anatomy: ModelAnatomy,
        layer: int,
        texts: list[str],
        progress: bool = False,
        cache: Path | None = None,
        batch_size: int = 64,
    ) -> None:
        ordered = sorted(set(texts), key=lambda t: (len(encode(tokenizer, t)), t))
        self.index = {text: row for row, text in enumerate(ordered)}
        key = _bank_key(model, layer, ordered)
        self.features = _read_bank(cache, key) if cache is not None else None
        if self.features is None:
            from tqdm.auto import tqdm

            chunks = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
            rows = [
                text_features(model, tokenizer, anatomy, layer, chunk, batch_size)
                for chunk in tqdm(chunks, desc="scope features", disable=not progress)
            ]
            self.features = torch.cat(rows) if rows else torch.zeros(0)
            if cache is not None:
                buffer = io.BytesIO()
                torch.save({"key": key, "features": self.features}, buffer)
                save_bytes(buffer.getvalue(), cache)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), hidden) features of texts in the bank."""
        return self.features[[self.index[t] for t in texts]]


def _bank_key(model: nn.Module, layer: int, ordered: list[str]) -> str:
    digest = hashlib.sha256(f"{weights_digest(model)}|{layer}|".encode())
    for text in ordered:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def _read_bank(path: Path, key: str) -> torch.Tensor | None:
    """The cached features when ``path`` holds a bank for ``key``, else ``None``."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # an unreadable cache is rebuilt
        logger.warning("SERAC: %s cannot be read (%s); computing the features again.", path, error)
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        logger.warning("SERAC: %s was made for other texts or weights; computing again.", path)
        return None
    features = saved.get("features")
    return features if isinstance(features, torch.Tensor) else None


class ScopeClassifier(nn.Module):
    """The trainable part of the scope classifier: features -> embedding, and the
    log-similarity of queries to edits."""

    def __init__(self, hidden_size: int, width: int, dim: int, seed: int) -> None:
        super().__init__()
        with seeded(seed, "cpu"):
            self.project = nn.Sequential(
                nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, dim)
            )
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``features`` (n, hidden) -> (n, dim)."""
        return self.project(features)

    def log_similarity(self, queries: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        """(n_queries, n_edits) log-similarities of query to edit embeddings."""
        return -self.scale * (queries[:, None, :] - edits[None, :, :]).pow(2).sum(-1)


def binary_log_likelihood(log_similarity: torch.Tensor, in_scope: torch.Tensor) -> torch.Tensor:
    """Per-pair log-likelihood of the labels under similarity ``exp(log_similarity)``."""
    similarity = log_similarity.exp().clamp(max=1 - 1e-6)
    return torch.where(in_scope, log_similarity, torch.log1p(-similarity))
