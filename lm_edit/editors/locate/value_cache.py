"""Opt-in disk cache of target values v* (``cache_values: true``).

v* depends on the model's weights, the request, the layer, the context templates and the
value hyperparameters; the key hashes all of them, the weights byte for byte. A cached
value is therefore reused only by a run that would compute exactly the same one: editors
sharing a value configuration (MEMIT, EMMET, AlphaEdit on the same layers) on the same
model, or a repeated run. A file is validated on load (checksum, the shape of the model's
hidden state, finite values); an invalid one is deleted and v* recomputed. Files live in
:func:`~lm_edit.paths.values_cache_dir` (``lm-edit sweep`` moves it into its own folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from lm_edit.core.cache_files import CacheFileError, check_tensor, load_cached, save_cached
from lm_edit.data.requests import EditRequest
from lm_edit.editors.locate.values import ValueConfig, ValueResult
from lm_edit.paths import values_cache_dir

FIELDS = {"target", "initial", "final_nll", "steps"}
# Part of the key; raised whenever the v* objective changes, so that values cached under an
# earlier definition are not reused (2: the KL term moved to the subject's last token).
OBJECTIVE_VERSION = 2


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
            "objective": OBJECTIVE_VERSION,
        },
        sort_keys=True,
    )
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return values_cache_dir(digest) / f"{name}.pt"


def load_value(path: Path, width: int) -> ValueResult | None:
    """The cached v* at ``path`` (vectors of ``width``, the hidden size), or None when
    there is none or the file is invalid."""

    def validate(data: Any) -> None:
        if not isinstance(data, dict) or set(data) != FIELDS:
            raise CacheFileError(f"expected a dict of {sorted(FIELDS)}")
        for name in ("target", "initial"):
            check_tensor(data[name], name, (width,))
        if not isinstance(data["final_nll"], float):
            raise CacheFileError(f"final_nll is {data['final_nll']!r}, not a float")
        if not isinstance(data["steps"], int) or data["steps"] < 0:
            raise CacheFileError(f"steps is {data['steps']!r}, not a count")

    data = load_cached(path, validate)
    if data is None:
        return None
    return ValueResult(data["target"], data["initial"], data["final_nll"], data["steps"])


def save_value(path: Path, value: ValueResult) -> None:
    """Write ``value`` atomically, with its checksum."""
    save_cached(
        {
            "target": value.target.cpu(),
            "initial": value.initial.cpu(),
            "final_nll": value.final_nll,
            "steps": value.steps,
        },
        path,
    )
