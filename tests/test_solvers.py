"""Properties of the closed-form solvers on random matrices."""

from __future__ import annotations

import pytest
import torch

from lm_edit.editors.locate.solvers import (
    SolverError,
    equality_update,
    least_squares_update,
    null_space_projector,
    null_space_update,
    regularised,
)


def _problem(out=6, width=10, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(width, 200, generator=g, dtype=torch.float64)
    cov = samples @ samples.T / 200
    keys = torch.randn(width, n, generator=g, dtype=torch.float64)
    residual = torch.randn(out, n, generator=g, dtype=torch.float64)
    return residual, keys, cov


def test_equality_meets_constraints_exactly():
    residual, keys, cov = _problem()
    update = equality_update(residual, keys, cov)
    torch.testing.assert_close(update @ keys, residual, rtol=1e-9, atol=1e-9)


def test_equality_is_the_minimum_disturbance_solution():
    residual, keys, cov = _problem()
    update = equality_update(residual, keys, cov)
    cost = torch.trace(update @ cov @ update.T)
    null = torch.linalg.svd(keys.T).Vh[keys.shape[1] :]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        other = (
            update
            + torch.randn(update.shape[0], null.shape[0], generator=g, dtype=torch.float64) @ null
        )
        torch.testing.assert_close(other @ keys, residual, rtol=1e-8, atol=1e-8)
        assert torch.trace(other @ cov @ other.T) >= cost - 1e-9


def test_batched_equality_with_one_fact_equals_rome_rank_one_formula():
    residual, keys, cov = _problem(n=1)
    update = equality_update(residual, keys, cov)
    u = torch.linalg.solve(cov, keys)
    rome = residual @ u.T / (keys.T @ u)
    torch.testing.assert_close(update, rome, rtol=1e-10, atol=1e-12)


def test_original_rome_constraint_on_plain_key_direction_from_averaged_key():
    residual, keys, cov = _problem(n=1)
    plain = keys + 0.1 * torch.ones_like(keys)
    update = equality_update(residual, plain, cov, direction_keys=keys)
    torch.testing.assert_close(update @ plain, residual, rtol=1e-9, atol=1e-9)
    u = torch.linalg.solve(cov, keys)
    cos = torch.nn.functional.cosine_similarity(update[0], u[:, 0], dim=0)
    assert abs(abs(cos.item()) - 1) < 1e-9


def test_least_squares_residual_is_minimal():
    residual, keys, cov = _problem(n=4)
    lam = 2.0
    update = least_squares_update(residual, keys, cov, lam=lam)

    def objective(w):
        return lam * torch.trace(w @ cov @ w.T) + ((w @ keys - residual) ** 2).sum()

    g = torch.Generator().manual_seed(3)
    best = objective(update)
    for _ in range(10):
        assert (
            objective(update + 1e-3 * torch.randn(update.shape, generator=g, dtype=torch.float64))
            > best
        )


def test_least_squares_with_huge_preservation_leaves_weights_unchanged():
    residual, keys, cov = _problem()
    update = least_squares_update(residual, keys, cov, lam=1e12)
    assert update.abs().max() < 1e-9


def test_least_squares_with_no_preservation_meets_the_targets():
    residual, keys, cov = _problem(n=3)
    update = least_squares_update(residual, keys, cov, lam=1e-10)
    torch.testing.assert_close(update @ keys, residual, rtol=1e-5, atol=1e-5)


def test_duplicate_keys_name_the_cases():
    residual, keys, cov = _problem(n=3)
    keys[:, 2] = keys[:, 0]
    with pytest.raises(SolverError, match="'case-a' and 'case-c'"):
        equality_update(residual, keys, cov, case_ids=["case-a", "case-b", "case-c"])


def test_emmet_lambda_stabilises_duplicate_keys():
    residual, keys, cov = _problem(n=2)
    keys[:, 1] = keys[:, 0]
    update = equality_update(residual, keys, cov, lam=0.1)
    assert torch.isfinite(update).all()


@pytest.mark.parametrize("bad", ["residual", "keys"])
def test_nan_is_reported(bad):
    residual, keys, cov = _problem()
    (residual if bad == "residual" else keys)[0, 0] = float("nan")
    with pytest.raises(SolverError, match="NaN or Inf"):
        equality_update(residual, keys, cov)
    with pytest.raises(SolverError, match="NaN or Inf"):
        least_squares_update(residual, keys, cov, lam=1.0)


def test_ridge_adds_scaled_identity():
    cov = torch.diag(torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(regularised(cov, 0.5), torch.diag(torch.tensor([3.5, 5.5])).double())


def test_ill_conditioned_equality_falls_back_to_least_squares(caplog):
    residual, keys, cov = _problem(n=3)
    noise = torch.randn(keys.shape[0], generator=torch.Generator().manual_seed(9)).double()
    keys[:, 2] = keys[:, 0] + keys[:, 1] + 1e-5 * noise
    update = equality_update(residual, keys, cov, case_ids=["a", "b", "c"])
    assert "ill-conditioned" in caplog.text
    assert torch.isfinite(update).all()
    torch.testing.assert_close(update @ keys[:, :2], residual[:, :2], rtol=1e-3, atol=1e-3)


def test_duplicate_keys_with_emmet_lambda_warn_naming_the_cases(caplog):
    residual, keys, cov = _problem(n=3)
    keys[:, 1] = keys[:, 0]
    equality_update(residual, keys, cov, lam=0.1, case_ids=["x", "y", "z"])
    assert "'x' and 'y'" in caplog.text


def test_precomputed_inverse_gives_the_same_update():
    residual, keys, cov = _problem(n=3)
    direct = equality_update(residual, keys, cov)
    via_inverse = equality_update(residual, keys, cov, cov_inverse=torch.linalg.inv(cov))
    torch.testing.assert_close(direct, via_inverse, rtol=1e-8, atol=1e-10)


def _low_rank_cov(width=10, rank=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(width, width, generator=g, dtype=torch.float64)).Q
    eigen = torch.cat([torch.linspace(1.0, 3.0, rank), torch.full((width - rank,), 1e-4)])
    return basis @ torch.diag(eigen.double()) @ basis.T, basis[:, :rank], basis[:, rank:]


def test_null_space_projector_is_an_orthogonal_projection_onto_small_eigenvalues():
    cov, kept, null = _low_rank_cov()
    projector = null_space_projector(cov, 1e-2)
    torch.testing.assert_close(projector @ projector, projector, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(projector, projector.T)
    torch.testing.assert_close(projector, null @ null.T, rtol=1e-8, atol=1e-8)
    relative = null_space_projector(cov, 1e-2, relative=True)
    torch.testing.assert_close(relative, projector, rtol=1e-8, atol=1e-8)


def test_null_space_projector_refuses_an_empty_null_space():
    cov, _, _ = _low_rank_cov()
    with pytest.raises(SolverError, match="null space is empty.*nullspace_threshold"):
        null_space_projector(cov, 1e-6)


def test_null_space_update_leaves_preserved_keys_untouched():
    cov, kept, null = _low_rank_cov()
    projector = null_space_projector(cov, 1e-2)
    g = torch.Generator().manual_seed(4)
    keys = torch.randn(10, 2, generator=g, dtype=torch.float64)
    residual = torch.randn(5, 2, generator=g, dtype=torch.float64)
    update = null_space_update(residual, keys, projector, lam=1e-4)
    assert (update @ kept).abs().max() < 1e-9 * update.abs().max()
    torch.testing.assert_close(update @ projector @ keys, residual, rtol=1e-2, atol=1e-2)


def test_null_space_update_keeps_the_keys_of_earlier_batches():
    cov, _, null = _low_rank_cov(width=12, rank=4)
    projector = null_space_projector(cov, 1e-2)
    g = torch.Generator().manual_seed(5)
    old = null @ torch.randn(8, 2, generator=g, dtype=torch.float64)
    new = null @ torch.randn(8, 2, generator=g, dtype=torch.float64)
    residual = torch.randn(5, 2, generator=g, dtype=torch.float64)
    without = null_space_update(residual, new, projector, lam=1e-6)
    kept = null_space_update(residual, new, projector, old @ old.T * 1e4, lam=1e-6)
    assert (kept @ old).norm() < 0.05 * (without @ old).norm()
