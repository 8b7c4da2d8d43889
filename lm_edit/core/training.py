"""Helpers for editors that optimise by gradient descent: a model whose own parameters are
frozen while the editor trains something, a seeded random state that leaves the caller's
untouched, and the negative log-likelihood of target tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Span = tuple[list[int], list[int]]
"""Where a row's target is scored: the positions whose next-token distributions count, and
the token expected from each."""


def teacher_forced(start: int, target: list[int]) -> Span:
    """The span of ``target`` written at index ``start`` of a sequence: token ``start + i``
    is predicted at position ``start + i - 1``, with the earlier target tokens as input."""
    return list(range(start - 1, start - 1 + len(target))), list(target)


def _row_nlls(log_probs: torch.Tensor, spans: list[Span]) -> list[torch.Tensor]:
    """Per row, the NLL of each target token (``log_probs`` is (rows, seq, vocab))."""
    nlls = []
    for row, (positions, token_ids) in enumerate(spans):
        where = torch.tensor(positions, device=log_probs.device)
        which = torch.tensor(token_ids, device=log_probs.device)
        nlls.append(-log_probs[row, where, which])
    return nlls


def target_nll(log_probs: torch.Tensor, spans: list[Span]) -> torch.Tensor:
    """Mean over rows of each row's mean per-token NLL (``log_probs`` is (rows, seq, vocab))."""
    return torch.stack([nll.mean() for nll in _row_nlls(log_probs, spans)]).mean()


def token_mean_nll(log_probs: torch.Tensor, spans: list[Span]) -> torch.Tensor:
    """Mean NLL over every target token of every row (longer targets weigh more), as
    ``F.cross_entropy`` over a batch's answer tokens."""
    return torch.cat(_row_nlls(log_probs, spans)).mean()


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Turn off gradients for the model's parameters and use eval mode; both are restored
    afterwards. Inside, an editor turns gradients back on for what it trains."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the body from ``torch.manual_seed(seed)`` (which seeds the CPU and every GPU); the
    random state of the CPU and of every GPU in use is restored afterwards, wherever the
    model's layers live (``device`` is accepted for callers that name one)."""
    del device
    in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if in_use else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
