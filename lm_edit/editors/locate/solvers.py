"""Closed-form solvers of the preservation-memorisation objective.

All solvers find an update ``ΔW`` (out x in) to a linear map ``W`` that keeps the outputs
of old keys (summarised by their second moment ``C = E[k kᵀ]``, in x in) and makes new
keys ``K`` (in x n) produce their targets. ``R`` (out x n) is the residual the update
must add on the new keys: ``R = V - (W K + b)``.

* equality  (ROME for n = 1, EMMET for a batch):
  ``min ||ΔW K0||²  s.t. ΔW K = R``  ->  ``ΔW = R (Kᵀ C⁻¹ K + λ I)⁻¹ Kᵀ C⁻¹``
* least squares (MEMIT):
  ``min λ ||ΔW K0||² + ||ΔW K - R||²``  ->  ``ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹``
* null-space least squares (AlphaEdit): the update is confined to the near-null space of
  ``C`` (projector ``P``) and also keeps the keys of earlier batches (``Kp Kpᵀ``):
  ``min ||ΔW P K - R||² + ||ΔW P Kp||² + λ ||ΔW P||²``
  ->  ``ΔWᵀ = (P (K Kᵀ + Kp Kpᵀ) + λ I)⁻¹ P K Rᵀ``

Everything is computed in float64 whatever the model's dtype.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

ILL_CONDITIONED = 1e8
SINGULAR = 1e12
DUPLICATE_COSINE = 1 - 1e-9


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
    cov_inverse: torch.Tensor | None = None,
) -> torch.Tensor:
    """Minimum-disturbance update meeting ``ΔW keys = residual`` exactly (for ``lam = 0``).

    ``direction_keys`` (default: ``keys``) set the update's row space ``C⁻¹ K_d``; original
    ROME uses the prefix-averaged key for the direction and the plain key for the
    constraint, r-ROME and EMMET use the same keys for both. ``lam`` adds ``λ I`` to the
    n x n system (EMMET's stabiliser). ``cov_inverse``, when given, replaces a solve
    against ``cov``. An ill-conditioned but not singular system is solved by least
    squares (with a warning); a singular one raises :class:`SolverError` naming the cases.
    """
    for name, tensor in (("residual", residual), ("keys", keys), ("covariance", cov)):
        _check_finite(name, tensor)
    keys = keys.double()
    direction = keys if direction_keys is None else direction_keys.double()
    if cov_inverse is not None:
        cinv_dir = cov_inverse.double() @ direction
    else:
        cinv_dir = torch.linalg.solve(cov.double(), direction)
    gram = keys.T @ cinv_dir
    _raise_on_duplicates(gram, lam, case_ids)
    if lam:
        gram = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    _raise_if_singular(gram, case_ids)
    # ΔW = A (C⁻¹ K_d)ᵀ meets ΔW K_c = A gramᵀ = R, so A = R gram⁻ᵀ = (gram⁻¹ Rᵀ)ᵀ; gram
    # is not symmetric when the constraint and direction keys differ (original ROME).
    coeffs = _stable_solve(gram, residual.double().T).T
    update = coeffs @ cinv_dir.T
    _check_finite("the equality-constrained update", update)
    return update


def _stable_solve(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``matrix⁻¹ rhs``; least squares (SVD-based) when ``matrix`` is ill-conditioned."""
    if matrix.shape[0] > 1 and torch.linalg.cond(matrix).item() > ILL_CONDITIONED:
        logger.warning(
            "The equality system is ill-conditioned; solving it by least squares instead."
        )
        return torch.linalg.lstsq(matrix.cpu(), rhs.cpu(), driver="gelsd").solution.to(rhs.device)
    return torch.linalg.solve(matrix, rhs)


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


def null_space_projector(
    cov: torch.Tensor, threshold: float, *, relative: bool = False
) -> torch.Tensor:
    """AlphaEdit's projector ``P = U₀ U₀ᵀ`` onto the eigenvectors of ``C`` whose eigenvalue is
    below ``threshold`` (times the largest eigenvalue when ``relative``)."""
    _check_finite("covariance", cov)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
    limit = threshold * eigenvalues.max().item() if relative else threshold
    basis = eigenvectors[:, eigenvalues < limit]
    if basis.shape[1] == 0:
        raise SolverError(
            f"No eigenvalue of the key statistics is below {limit:.3g}, so the null space is "
            "empty and AlphaEdit cannot edit. Raise nullspace_threshold."
        )
    return basis @ basis.T


def null_space_update(
    residual: torch.Tensor,
    keys: torch.Tensor,
    projector: torch.Tensor,
    past_gram: torch.Tensor | None = None,
    *,
    lam: float,
) -> torch.Tensor:
    """AlphaEdit's update (module docstring): ``ΔW`` kills every direction outside the null
    space, so ``ΔW k0 ≈ 0`` for the preserved keys, and keeps earlier edits' keys."""
    for name, tensor in (("residual", residual), ("keys", keys), ("projector", projector)):
        _check_finite(name, tensor)
    keys = keys.double()
    projector = projector.double()
    gram = keys @ keys.T
    if past_gram is not None:
        gram = gram + past_gram.double()
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    transposed = torch.linalg.solve(
        projector @ gram + lam * eye, projector @ keys @ residual.double().T
    )
    update = transposed.T
    _check_finite("the null-space update", update)
    return update


def _most_similar_pair(gram: torch.Tensor, case_ids: list[str] | None) -> tuple[str, str, float]:
    """The two cases whose keys are closest in the metric of ``gram`` and their cosine."""
    norm = torch.diagonal(gram).clamp_min(1e-30).sqrt()
    cosine = gram / norm[:, None] / norm[None, :]
    cosine.fill_diagonal_(0)
    i, j = divmod(int(cosine.abs().argmax()), cosine.shape[0])
    names = case_ids or [str(k) for k in range(gram.shape[0])]
    return names[i], names[j], float(cosine[i, j].abs())


def _raise_on_duplicates(gram: torch.Tensor, lam: float, case_ids: list[str] | None) -> None:
    """Two cases with (nearly) identical keys make the equality system singular; name them
    (an error without a stabiliser ``lam``, a warning with one)."""
    if gram.shape[0] < 2:
        return
    first, second, cosine = _most_similar_pair(gram, case_ids)
    if cosine < DUPLICATE_COSINE:
        return
    message = (
        f"Cases {first!r} and {second!r} have identical keys (the same subject in one "
        "batch), so their equality constraints conflict and the system is singular."
    )
    if lam:
        logger.warning("%s emmet_lambda=%g trades them off.", message, lam)
        return
    raise SolverError(f"{message} {_REMEDY}")


def _raise_if_singular(gram: torch.Tensor, case_ids: list[str] | None) -> None:
    """Name the cases whose keys make the n x n equality system (near) singular."""
    if gram.shape[0] == 1:
        if gram.abs().item() > 1e-12:
            return
        raise SolverError(f"Key of case {(case_ids or ['?'])[0]!r} is zero: nothing to solve.")
    cond = torch.linalg.cond(gram).item()
    if cond < SINGULAR:
        return
    first, second, _ = _most_similar_pair(gram, case_ids)
    raise SolverError(
        f"The equality system is singular (condition number {cond:.2e}): cases {first!r} "
        f"and {second!r} have (nearly) identical keys, for example the same subject in one "
        f"batch. {_REMEDY}"
    )


_REMEDY = (
    "Edit them in separate batches, or use a least-squares solver (editor=memit) or a "
    "positive emmet_lambda."
)
