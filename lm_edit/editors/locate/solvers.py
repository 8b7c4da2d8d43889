"""Closed-form solvers of the preservation-memorisation objective.

All solvers find an update ``ΔW`` (out x in) to a linear map ``W`` that keeps the outputs
of old keys (summarised by their second moment ``C = E[k kᵀ]``, in x in) and makes new
keys ``K`` (in x n) produce their targets. ``R`` (out x n) is the residual the update
must add on the new keys: ``R = V - (W K + b)``.

* equality  (ROME for n = 1, EMMET for a batch):
  ``min ||ΔW K0||²  s.t. ΔW K = R``  ->  ``ΔW = R (Kᵀ C⁻¹ K + λ I)⁻¹ Kᵀ C⁻¹``
* least squares (MEMIT):
  ``min λ ||ΔW K0||² + ||ΔW K - R||²``  ->  ``ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹``

Everything is computed in float64 whatever the model's dtype.
"""

from __future__ import annotations

import torch


class SolverError(ArithmeticError):
    """A solve produced NaN/Inf or met a singular system (the message names the cause)."""


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise SolverError(
            f"{name} contains NaN or Inf. Check the edit targets and the key statistics "
            "(a larger stats_samples or a non-zero stats_ridge usually helps)."
        )


def regularised(cov: torch.Tensor, ridge: float) -> torch.Tensor:
    """``C + ridge * mean(diag C) * I`` in float64: keeps the solve well posed when ``C``
    was estimated from few tokens."""
    cov = cov.double()
    if ridge <= 0:
        return cov
    scale = torch.diagonal(cov).mean().clamp_min(1e-12)
    return cov + ridge * scale * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)


def equality_update(
    residual: torch.Tensor,
    keys: torch.Tensor,
    cov: torch.Tensor,
    *,
    direction_keys: torch.Tensor | None = None,
    lam: float = 0.0,
    case_ids: list[str] | None = None,
) -> torch.Tensor:
    """Minimum-disturbance update meeting ``ΔW keys = residual`` exactly (for ``lam = 0``).

    ``direction_keys`` (default: ``keys``) set the update's row space ``C⁻¹ K_d``; original
    ROME uses the prefix-averaged key for the direction and the plain key for the
    constraint, r-ROME and EMMET use the same keys for both. ``lam`` adds ``λ I`` to the
    n x n system (EMMET's stabiliser).
    """
    for name, tensor in (("residual", residual), ("keys", keys), ("covariance", cov)):
        _check_finite(name, tensor)
    keys = keys.double()
    direction = keys if direction_keys is None else direction_keys.double()
    cinv_dir = torch.linalg.solve(cov.double(), direction)
    gram = keys.T @ cinv_dir
    if lam:
        gram = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    _raise_if_singular(gram, case_ids)
    coeffs = torch.linalg.solve(gram.T, residual.double().T).T
    update = coeffs @ cinv_dir.T
    _check_finite("the equality-constrained update", update)
    return update


def least_squares_update(
    residual: torch.Tensor, keys: torch.Tensor, cov: torch.Tensor, *, lam: float
) -> torch.Tensor:
    """MEMIT's update ``ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹``; ``lam`` weighs preservation."""
    for name, tensor in (("residual", residual), ("keys", keys), ("covariance", cov)):
        _check_finite(name, tensor)
    keys = keys.double()
    system = lam * cov.double() + keys @ keys.T
    update = torch.linalg.solve(system, keys @ residual.double().T).T
    _check_finite("the least-squares update", update)
    return update


def _raise_if_singular(gram: torch.Tensor, case_ids: list[str] | None) -> None:
    """Name the cases whose keys make the n x n equality system (near) singular."""
    if gram.shape[0] == 1:
        if gram.abs().item() > 1e-12:
            return
        raise SolverError(f"Key of case {(case_ids or ['?'])[0]!r} is zero: nothing to solve.")
    cond = torch.linalg.cond(gram).item()
    if cond < 1e12:
        return
    norm = torch.diagonal(gram).clamp_min(1e-30).sqrt()
    cosine = gram / norm[:, None] / norm[None, :]
    cosine.fill_diagonal_(0)
    i, j = divmod(int(cosine.abs().argmax()), cosine.shape[0])
    names = case_ids or [str(k) for k in range(gram.shape[0])]
    raise SolverError(
        f"The equality system is singular (condition number {cond:.2e}): cases "
        f"{names[i]!r} and {names[j]!r} have (nearly) identical keys, for example the "
        "same subject in one batch. Edit them in separate batches, or use a least-squares "
        "solver (editor=memit) or a positive emmet_lambda."
    )
