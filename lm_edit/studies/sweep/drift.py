"""Parameter drift: how far every edited weight matrix has moved from its original.

For each parameter the stream has modified, the original is the copy taken by the
earliest edit record that touched it (``EditRecord.originals``), so the drift is always
measured against the unedited model, however many edits came after. Modules an editor
added (an adapter, a codebook) are counted by :func:`added_parameters`.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from lm_edit.core.record import earliest_originals

LAYER = re.compile(r"\.(\d+)\.")


def matrix_drift(original: torch.Tensor, edited: torch.Tensor) -> dict[str, float]:
    """Pearson r between the flattened original and edited weights, and the relative
    Frobenius norm of the change, ||W - W0||_F / ||W0||_F (float64 throughout)."""
    w0 = original.detach().to("cpu", torch.float64).flatten()
    w1 = edited.detach().to("cpu", torch.float64).flatten()
    a, b = w0 - w0.mean(), w1 - w1.mean()
    denominator = a.norm() * b.norm()
    pearson = float((a @ b) / denominator) if denominator > 0 else float("nan")
    base = w0.norm()
    relative = float((w1 - w0).norm() / base) if base > 0 else float("nan")
    return {"pearson_r": pearson, "relative_frobenius": relative}


def parameter_drift(model: Any, records: list[Any]) -> list[dict[str, Any]]:
    """One row per edited parameter: name, layer index (or None), Pearson r and relative
    Frobenius norm of the change versus the original weights. Editors that add modules
    instead leave the weights alone: :func:`added_parameters` counts what they added."""
    rows = []
    for name, original in sorted(earliest_originals(records).items()):
        layer = LAYER.search(name)
        rows.append(
            {
                "parameter": name,
                "layer": int(layer.group(1)) if layer else None,
                **matrix_drift(original, model.get_parameter(name)),
            }
        )
    return rows


def drift_summary(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean Pearson r and mean relative Frobenius norm over the edited matrices (None
    before any edit)."""
    if not rows:
        return {"pearson_r": None, "relative_frobenius": None}
    return {
        key: sum(row[key] for row in rows) / len(rows)
        for key in ("pearson_r", "relative_frobenius")
    }


def added_parameters(records: list[Any]) -> int:
    """Parameters in the modules the records added beside the model's own (0 for editors
    that only rewrite weights)."""
    return sum(record.added_parameters() for record in records)
