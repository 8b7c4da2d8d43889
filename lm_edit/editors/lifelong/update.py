"""UltraEdit's closed-form weight change for one turn: standardise each row (a weight's
input ``k`` joined with the loss's gradient ``g`` at its output) with the lifelong
statistics, take the target output change ``v = -lr · |k̂|² · ĝ`` per row, and solve the
ridge regression ``min ‖K Δ - V‖² + ridge · ‖Δ‖²`` on the raw inputs:
``Δ = (KᵀK + ridge · I)⁻¹ KᵀV``, an (in, out) change."""

from __future__ import annotations

import torch

from lm_edit.editors.lifelong.normalizer import LifelongNormalizer


def target_changes(
    keys: torch.Tensor, grads: torch.Tensor, normalizer: LifelongNormalizer, lr: float
) -> torch.Tensor:
    """Per row, the output change the turn asks of the weight: ``-lr · |k̂|² · ĝ``."""
    standard = normalizer(torch.cat((keys, grads), -1))
    keys_hat, grads_hat = standard.split([keys.shape[1], grads.shape[1]], -1)
    return -lr * keys_hat.pow(2).sum(-1, keepdim=True) * grads_hat


def ridge_solve(keys: torch.Tensor, targets: torch.Tensor, ridge: float) -> torch.Tensor:
    """The (in, out) change mapping each key (a row of ``keys``) to its target, least
    squares with an L2 penalty of ``ridge``."""
    gram = keys.T @ keys + ridge * torch.eye(keys.shape[1], device=keys.device)
    return torch.linalg.solve(gram, keys.T @ targets)
