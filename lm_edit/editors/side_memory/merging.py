"""TIES merging (Yadav et al., 2023) of WISE's side-memory shards into one, as WISE's
reference merges them (``merge_alg: ties``): each shard's change from the original
weight is trimmed to its ``density`` largest magnitudes, the sign of each entry is
elected by the sum of the weighted changes, and the changes that agree with it are
averaged (weighted, divided by the sum of the agreeing weights)."""

from __future__ import annotations

import torch


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """``delta`` with all but its ``density`` fraction of largest magnitudes zeroed."""
    if density >= 1:
        return delta
    k = int(density * delta.numel())
    if k < 1:
        raise ValueError(f"density={density} keeps no entry of a {delta.numel()}-entry change.")
    keep = torch.zeros(delta.numel(), dtype=delta.dtype, device=delta.device)
    keep[delta.abs().flatten().float().topk(k).indices] = 1
    return delta * keep.view_as(delta)


def ties_merge(
    base: torch.Tensor, shards: list[torch.Tensor], weights: list[float], density: float
) -> torch.Tensor:
    """One weight from ``shards`` (each a full weight like ``base``)."""
    if not shards:
        return base.clone()
    deltas = torch.stack([trim(s - base, density) for s in shards])
    scale = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device)
    scale = scale.view(-1, *([1] * base.dim()))
    weighted = deltas * scale
    majority = (weighted.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
    agree = (weighted.sign() == majority).to(deltas.dtype)
    divisor = (scale * agree).sum(dim=0)
    divisor[divisor == 0] = 1
    return (base + (weighted * agree).sum(dim=0) / divisor).to(base.dtype)
