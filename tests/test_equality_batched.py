"""The batched equality solve with different constraint and direction keys (original
ROME with more than one fact per batch): the constraint ``ΔW K_c = R`` holds exactly
(tests/test_locate_efficacy.py checks that the edits take on a model)."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.locate.solvers import equality_update


def _problem(out=7, width=12, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(width, 300, generator=g, dtype=torch.float64)
    cov = samples @ samples.T / 300
    direction = torch.randn(width, n, generator=g, dtype=torch.float64)
    constraint = direction + 0.5 * torch.randn(width, n, generator=g, dtype=torch.float64)
    residual = torch.randn(out, n, generator=g, dtype=torch.float64)
    return residual, constraint, direction, cov


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_constraint_holds_with_different_constraint_and_direction_keys(n, seed):
    residual, constraint, direction, cov = _problem(n=n, seed=seed)
    update = equality_update(residual, constraint, cov, direction_keys=direction)
    torch.testing.assert_close(update @ constraint, residual, rtol=0, atol=1e-10)


def test_the_precomputed_inverse_meets_the_same_constraint():
    residual, constraint, direction, cov = _problem(n=4)
    update = equality_update(
        residual,
        constraint,
        cov,
        direction_keys=direction,
        cov_inverse=torch.linalg.inv(cov),
    )
    torch.testing.assert_close(update @ constraint, residual, rtol=0, atol=1e-10)


def test_the_update_lies_in_the_span_of_the_direction_keys():
    residual, constraint, direction, cov = _problem(n=3)
    update = equality_update(residual, constraint, cov, direction_keys=direction)
    basis = torch.linalg.solve(cov, direction)
    coeffs = torch.linalg.lstsq(basis, update.T).solution
    torch.testing.assert_close(basis @ coeffs, update.T, rtol=0, atol=1e-10)


def test_the_stabilised_batch_system_uses_the_same_orientation():
    """With λ > 0 the constraint is met only approximately, but ``ΔW K_c`` must equal
    ``R (G + λI)⁻ᵀ Gᵀ`` with ``G = K_cᵀ C⁻¹ K_d``."""
    residual, constraint, direction, cov = _problem(n=3)
    lam = 0.3
    update = equality_update(residual, constraint, cov, direction_keys=direction, lam=lam)
    gram = constraint.T @ torch.linalg.solve(cov, direction)
    system = gram + lam * torch.eye(3, dtype=gram.dtype)
    expected = residual @ torch.linalg.inv(system).T @ gram.T
    torch.testing.assert_close(update @ constraint, expected, rtol=0, atol=1e-10)
