"""Where a new edit goes in a GRACE codebook (Hartvigsen et al., 2023, Algorithm 1).

A codebook holds keys (a layer's input at an edited token), one deferral radius per key
and the label (the edit's answer) each key stands for. For a new query ``h`` with label
``y`` and initial radius ``eps``, with ``d`` the Euclidean distance to the nearest key
``i``:

* no key, or ``d > eps + ε_i`` (the two balls would not touch): **add** a key at ``h``;
* ``y`` differs from key ``i``'s label: **split** -- add a key at ``h`` and shrink both
  radii to ``d / 2`` (key ``i`` to just under it, never enlarged), so the balls no
  longer overlap; when ``h`` coincides with key ``i`` (``d`` is 0) no radius can separate
  them and the new edit **relabels** key ``i`` instead (the same input cannot defer to
  two answers);
* ``y`` equals key ``i``'s label: **expand** -- no key is added; ``ε_i`` grows to ``d``
  when ``h`` lies outside it (``coverage``; ``moving_average`` also moves key ``i``
  halfway towards ``h``), and key ``i``'s value is trained on the new edit too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

SPLIT_MARGIN = 1e-5
"""How far below ``d / 2`` the nearest key's radius is put on a split (as in EasyEdit), so
the point halfway between the two keys belongs to the newer one."""


@dataclass(frozen=True)
class Placement:
    """The decision for one query: the action, the nearest key and its distance."""

    action: Literal["add", "split", "relabel", "expand"]
    nearest: int | None = None
    distance: float | None = None


def distances(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (rows of ``queries`` x rows of ``keys``) in float32, computed
    pairwise rather than through the matrix-product shortcut, so a query's distance to a
    key made from the same vector is exactly 0."""
    return torch.cdist(
        queries.float(), keys.float(), p=2.0, compute_mode="donot_use_mm_for_euclid_dist"
    )


def place(
    keys: torch.Tensor,
    radii: torch.Tensor,
    labels: list[str],
    query: torch.Tensor,
    label: str,
    eps: float,
) -> Placement:
    """Decide where ``query`` (one vector) with ``label`` goes (see the module docstring)."""
    if keys.shape[0] == 0:
        return Placement("add")
    dist, nearest = distances(query.view(1, -1), keys)[0].min(dim=0)
    d, i = float(dist), int(nearest)
    if d > eps + float(radii[i]):
        return Placement("add", i, d)
    if labels[i] != label:
        if d / 2 - SPLIT_MARGIN <= 0:
            return Placement("relabel", i, d)
        return Placement("split", i, d)
    return Placement("expand", i, d)
