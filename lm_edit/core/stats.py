"""Second-moment statistics ``C = E[k kᵀ]`` of the keys of MLP output projections.

One forward pass over a text source collects the statistics of every requested layer at
once (the pass stops after the deepest one). Results are cached on disk under
``<cache>/stats/<fingerprint>/`` keyed by model fingerprint, layer, text source and
sample count. Every file (statistics, derived matrices, sampled text) carries a checksum
and is validated on load (:mod:`lm_edit.core.cache_files`): a bad one is rebuilt.

Text sources (``stats_source``):

============  ==============================================================
``auto``      ``wikitext`` if the Hub is reachable, otherwise ``model``
``wikitext``  wikitext-103 (``Salesforce/wikitext``, ``wikitext-103-raw-v1``, train)
``model``     text sampled from the model itself (works offline, always)
a file path   a ``.txt`` file (one passage per blank-line-separated block) or a
              ``.jsonl`` file with a ``text`` field
============  ==============================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.cache_files import CacheFileError, check_tensor, load_cached, save_cached
from lm_edit.core.fingerprint import model_fingerprint
from lm_edit.core.hooks import capture_inputs, run_until_stop
from lm_edit.core.tokens import pad_batch
from lm_edit.core.training import seeded
from lm_edit.paths import stats_cache_dir

logger = logging.getLogger(__name__)

WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1")


@dataclass(frozen=True)
class StatsSpec:
    """What to collect: ``samples`` passages of at most ``max_length`` tokens from
    ``source`` (``model_samples`` when the text is sampled from the model, which costs a
    generation per token), ``batch_size`` passages per forward pass."""

    source: str = "auto"
    samples: int = 1000
    model_samples: int = 64
    max_length: int = 128
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class KeyStatistics:
    """``E[k kᵀ]`` of one layer (float32, on CPU) and the cache file it was loaded from."""

    path: Path
    matrix: torch.Tensor


def passages(spec: StatsSpec, source: str) -> int:
    """How many passages ``spec`` asks for from ``source``."""
    return spec.model_samples if source == "model" else spec.samples


def _cache_file(fingerprint: str, layer: int, source_key: str, spec: StatsSpec, n: int) -> Path:
    name = f"layer{layer}-{source_key}-n{n}-len{spec.max_length}-seed{spec.seed}.pt"
    return stats_cache_dir(fingerprint) / name


def _source_key(source: str) -> str:
    if source in ("wikitext", "model"):
        return source
    path = Path(source)
    stat = path.stat()
    tag = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"file-{hashlib.sha256(tag.encode()).hexdigest()[:12]}"


def second_moments(
    model, tokenizer, anatomy: ModelAnatomy, layers: list[int], spec: StatsSpec
) -> dict[int, torch.Tensor]:
    """``E[k kᵀ]`` (float32, on CPU) of the MLP-out keys of each layer in ``layers``."""
    found = key_statistics(model, tokenizer, anatomy, layers, spec)
    return {layer: stats.matrix for layer, stats in found.items()}


def key_statistics(
    model, tokenizer, anatomy: ModelAnatomy, layers: list[int], spec: StatsSpec
) -> dict[int, KeyStatistics]:
    """``E[k kᵀ]`` of ``layers`` from the cache; missing or invalid ones are collected first,
    all in one forward pass over the text."""
    fingerprint = model_fingerprint(model)
    source = resolve_source(spec.source)
    key = _source_key(source)
    n = passages(spec, source)
    files = {layer: _cache_file(fingerprint, layer, key, spec, n) for layer in layers}
    found = {
        layer: load_cached(path, _square("key statistics", anatomy.mlp_out_shape(model, layer)[1]))
        for layer, path in files.items()
    }
    missing = [layer for layer, matrix in found.items() if matrix is None]
    if missing:
        logger.info(
            "Collecting key statistics for layers %s from source '%s' (%d passages)",
            missing,
            source,
            n,
        )
        texts = load_texts(model, tokenizer, source, spec, fingerprint)
        for layer, cov in collect(model, tokenizer, anatomy, missing, texts, spec).items():
            save_cached(cov, files[layer])
            found[layer] = cov
    return {layer: KeyStatistics(files[layer], found[layer]) for layer in layers}


def _square(what: str, width: int, dtype: torch.dtype = torch.float32) -> Callable[[Any], object]:
    """Validator of a finite ``width × width`` matrix of ``dtype``."""
    return lambda value: check_tensor(value, what, (width, width), dtype)


def derived(
    stats: KeyStatistics,
    tag: str,
    compute: Callable[[torch.Tensor], torch.Tensor],
    dtype: torch.dtype,
) -> torch.Tensor:
    """``compute(stats.matrix)`` (an inverse, a projector: a finite matrix of ``dtype``
    shaped like the statistics), cached beside them as ``<stats file>.<tag>.pt`` and
    recomputed when that file is missing or invalid."""
    path = stats.path.with_name(f"{stats.path.stem}.{tag}.pt")
    value = load_cached(path, _square(f"derived matrix '{tag}'", stats.matrix.shape[0], dtype))
    if value is None:
        value = compute(stats.matrix)
        save_cached(value, path)
    return value


def collect(
    model, tokenizer, anatomy: ModelAnatomy, layers: list[int], texts: list[str], spec: StatsSpec
) -> dict[int, torch.Tensor]:
    """One pass over ``texts`` accumulating ``Σ k kᵀ / N`` for all ``layers`` at once."""
    device = next(model.parameters()).device
    names = {anatomy.mlp_out_name(layer): layer for layer in layers}
    deepest = anatomy.mlp_out_name(max(layers))
    modules = {name: model.get_submodule(name) for name in names}
    sums: dict[int, torch.Tensor] = {}
    count = 0
    for start in tqdm(range(0, len(texts), spec.batch_size), desc="key statistics", unit="batch"):
        chunk = texts[start : start + spec.batch_size]
        encoded = [list(tokenizer(t)["input_ids"])[: spec.max_length] for t in chunk]
        batch = pad_batch([e for e in encoded if e]).to(device)
        mask = batch.attention_mask.bool()
        with torch.no_grad(), capture_inputs(modules, stop_after=deepest) as got:
            run_until_stop(
                lambda b=batch: model(input_ids=b.input_ids, attention_mask=b.attention_mask)
            )
        for name, layer in names.items():
            # each layer's sum stays on the device that holds the layer, in float64
            keys = got[name][mask.to(got[name].device)].double()
            sums[layer] = sums.get(layer, 0) + keys.T @ keys
        count += int(mask.sum())
    if count == 0:
        raise ValueError("The statistics text source produced no tokens.")
    return {layer: (total / count).float().cpu() for layer, total in sums.items()}


def resolve_source(source: str) -> str:
    """Turn ``auto`` into ``wikitext`` or ``model`` (logging which); validate file paths."""
    if source == "auto":
        if _hub_dataset_available():
            source = "wikitext"
        else:
            logger.warning(
                "Key statistics: the Hub is not reachable, so text sampled from the model "
                "itself is used (pass stats_source=<text file> to use your own text)."
            )
            source = "model"
    elif source not in ("wikitext", "model") and not Path(source).is_file():
        raise FileNotFoundError(
            f"stats_source={source!r} is neither 'auto', 'wikitext', 'model' nor an existing file."
        )
    logger.info("Key statistics source: %s", source)
    return source


def _hub_dataset_available() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(WIKITEXT[0], timeout=5)
        return True
    except Exception:  # any failure means: not reachable from here
        return False


def load_texts(
    model, tokenizer, source: str, spec: StatsSpec, fingerprint: str | None = None
) -> list[str]:
    """``spec.samples`` passages from ``source`` (see the module docstring). Text sampled
    from the model is cached beside the statistics when ``fingerprint`` is given."""
    if source == "model":
        if fingerprint is None:
            return sample_model_texts(model, tokenizer, spec)
        return _cached_model_texts(model, tokenizer, spec, fingerprint)
    if source == "wikitext":
        from datasets import load_dataset

        rows = load_dataset(*WIKITEXT, split="train", streaming=True)
        texts = (r["text"] for r in rows if len(r["text"].strip()) > 200)
        return [t for _, t in zip(range(spec.samples), texts, strict=False)]
    return _file_texts(Path(source), spec.samples)


def _cached_model_texts(model, tokenizer, spec: StatsSpec, fingerprint: str) -> list[str]:
    name = f"texts-model-n{spec.model_samples}-len{spec.max_length}-seed{spec.seed}.json"
    path = stats_cache_dir(fingerprint) / name

    def validate(value: Any) -> None:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise CacheFileError("sampled texts are not a list of strings")
        if len(value) != spec.model_samples:
            raise CacheFileError(f"{len(value)} sampled texts, expected {spec.model_samples}")

    texts = load_cached(path, validate)
    if texts is None:
        texts = sample_model_texts(model, tokenizer, spec)
        save_cached(texts, path)
    return texts


def _file_texts(path: Path, samples: int) -> list[str]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in handle if line.strip()]
    else:
        texts = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    if not texts:
        raise ValueError(f"stats_source file {path} contains no text.")
    return texts[:samples]


def sample_model_texts(model, tokenizer, spec: StatsSpec) -> list[str]:
    """Passages sampled from the model (temperature 1), seeded, in batches."""
    device = next(model.parameters()).device
    start_id = tokenizer.bos_token_id
    if start_id is None:
        start_id = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start_id
    texts: list[str] = []
    with seeded(spec.seed):
        total = spec.model_samples
        progress = tqdm(total=total, desc="sampling text for statistics", unit="passage")
        while len(texts) < total:
            n = min(spec.batch_size * 4, total - len(texts))
            ids = torch.full((n, 1), start_id, dtype=torch.long, device=device)
            with torch.no_grad():
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_k=0,
                    max_new_tokens=spec.max_length - 1,
                    pad_token_id=pad,
                )
            texts += tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)
            progress.update(n)
        progress.close()
    return texts


def passage_ids(
    model, tokenizer, source: str, count: int, max_tokens: int, seed: int, what: str
) -> tuple[list[list[int]], str]:
    """Token ids of ``count`` passages of at most ``max_tokens`` tokens from ``source``
    (``auto``, ``wikitext``, ``model`` or a file, as for statistics), and the source used;
    ``what`` names the setting in the error raised when no passage is left."""
    spec = StatsSpec(
        source=source, samples=count, model_samples=count, max_length=max_tokens, seed=seed
    )
    resolved = resolve_source(spec.source)
    texts = load_texts(model, tokenizer, resolved, spec, model_fingerprint(model))
    rows = [list(tokenizer(t)["input_ids"])[:max_tokens] for t in texts]
    rows = [r for r in rows if len(r) > 1]
    if not rows:
        raise ValueError(f"{what}={source!r} gave no text.")
    return rows, resolved
