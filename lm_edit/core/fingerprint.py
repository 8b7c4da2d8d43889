"""Fingerprints of a model's weights, the keys of every cache that depends on them.

Every byte of every tensor of the state dict is hashed (with its name, dtype and shape),
with xxh3-128 when the ``xxhash`` package is installed (it comes with ``datasets``) and
SHA-256 otherwise. On SmolLM2-135M in float32 (651 MB of state dict) that takes 31 ms on
CPU with xxh3 and 0.4 s with SHA-256 (``bench/bench_fingerprint.py``). Callers compute it
once per model state: when a stream prepares its editor (statistics) and, with the value
cache on, once per batch (the weights change with every batch).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import torch
from torch import nn


class _Hash(Protocol):
    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def _new_hash() -> _Hash:
    try:
        import xxhash
    except ImportError:
        return hashlib.sha256()
    return xxhash.xxh3_128()


def weights_digest(model: nn.Module) -> str:
    """Hash of every parameter and buffer of ``model``, byte for byte."""
    digest = _new_hash()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().contiguous().cpu().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)};".encode())
        if data.numel():
            digest.update(memoryview(data.view(torch.uint8).numpy()))
    return digest.hexdigest()[:32]


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's config and of all its weights (:func:`weights_digest`)."""
    config = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode())
    digest.update(weights_digest(model).encode())
    return digest.hexdigest()[:16]
