"""WISE's activation objective: per-row activation distances between the side and the
main memory, and the three margins that separate edits from irrelevant inputs."""

from __future__ import annotations

import torch

from lm_edit.core.training import Span
from lm_edit.editors.side_memory.adaptor import SideMemoryAdaptor


def edit_nll(log_probs: torch.Tensor, spans: list[Span], denominator: str) -> torch.Tensor:
    """Mean over rows of each row's target NLL: summed over its ``T`` target tokens and
    divided by ``T + 1`` (``"reference"``: WISE's label mask also counts the position
    before the first target prediction, whose label is ignored) or by ``T``
    (``"target"``)."""
    extra = 1 if denominator == "reference" else 0
    losses = []
    for row, (positions, token_ids) in enumerate(spans):
        where = torch.tensor(positions, device=log_probs.device)
        which = torch.tensor(token_ids, device=log_probs.device)
        losses.append(-log_probs[row, where, which].sum() / (len(token_ids) + extra))
    return torch.stack(losses).mean()


def row_distances(
    adaptor: SideMemoryAdaptor, attention_mask: torch.Tensor, n_edit_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's mean ``||act(side out) - act(main out)||`` over its real positions, from
    the adaptor's last editing pass: (edit rows, irrelevant rows)."""
    main, side = adaptor.outputs
    valid = attention_mask.to(main.device).float()
    dist = (adaptor.distance(main, side) * valid).sum(dim=1) / valid.sum(dim=1)
    return dist[:n_edit_rows], dist[n_edit_rows:]


def margin_loss(
    inside: torch.Tensor,
    outside: torch.Tensor,
    owners: torch.Tensor,
    act_margin: tuple[float, ...],
) -> torch.Tensor:
    """Mean over requests (``owners`` maps each edit row to its request) of: irrelevant
    distances at least ``gamma`` below the request's, irrelevant ones at most ``alpha``,
    the request's at least ``beta``; each term the mean of its positive parts."""
    alpha, beta, gamma = act_margin
    terms = []
    for owner in owners.unique():
        mine = inside[owners == owner]
        terms.append(
            positive_mean(outside.view(-1, 1) - mine + gamma)
            + positive_mean(outside - alpha)
            + positive_mean(beta - mine)
        )
    return torch.stack(terms).mean()


def positive_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of the positive entries of ``values`` (0 when there are none)."""
    positive = values[values > 0]
    return positive.mean() if positive.numel() else values.new_zeros(())
