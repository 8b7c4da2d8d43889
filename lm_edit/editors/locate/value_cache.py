"""Opt-in disk cache of target values v* (``cache_values: true``).

v* depends on the model's weights, the request, the layer, the context templates and the
value hyperparameters; the key hashes all of them, the weights byte for byte. A cached
value is therefore reused only by a run that would compute exactly the same one: editors
sharing a value configuration (MEMIT, EMMET, AlphaEdit on the same layers) on the same
model, or a repeated run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from lm_edit.atomic import save_tensors
from lm_edit.data.requests import EditRequest
from lm_edit.editors.locate.values import ValueConfig, ValueResult
from lm_edit.paths import values_cache_dir


def weights_digest(model) -> str:
    """Hash of every parameter and buffer of ``model``, byte for byte."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        data = tensor.detach().contiguous().cpu()
        digest.update(str((data.dtype, tuple(data.shape))).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def value_path(
    digest: str,
    request: EditRequest,
    layer: int,
    templates: list[str],
    config: ValueConfig,
) -> Path:
    """Cache file of v* for one request under one model state and configuration."""
    value_fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(ValueConfig)}
    key = json.dumps(
        {
            "prompt": request.prompt,
            "subject": request.subject,
            "target_new": request.target_new,
            "layer": layer,
            "templates": templates,
            "config": value_fields,
        },
        sort_keys=True,
    )
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return values_cache_dir(digest) / f"{name}.pt"


def load_value(path: Path) -> ValueResult | None:
    """The cached v* at ``path``, or None."""
    if not path.is_file():
        return None
    data = torch.load(path, weights_only=True)
    return ValueResult(data["target"], data["initial"], data["final_nll"], data["steps"])


def save_value(path: Path, value: ValueResult) -> None:
    """Write ``value`` atomically (temporary file, then rename)."""
    save_tensors(
        {
            "target": value.target.cpu(),
            "initial": value.initial.cpu(),
            "final_nll": value.final_nll,
            "steps": value.steps,
        },
        path,
    )
