"""UltraEdit's lifelong normalisation: running per-feature mean and spread of every row
(a weight's input joined with its output gradient) seen since the stream began, used to
standardise each new turn's rows.

The update follows the UltraEdit reference's ``RunningMeanStd`` (``nets.py``): a batch of
``b`` rows adds ``b · var(batch)`` (the batch's unbiased variance) plus the usual
between-means term to the running sum of squares, and the spread is
``sqrt(sum / (n - 1 + eps))``. A batch of one row has no unbiased variance (the
reference's would be NaN and poison the stream); it adds nothing to the sum of squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NormalizerState:
    """A copy of a normaliser's statistics (what undo restores)."""

    count: float
    mean: torch.Tensor | None
    squares: torch.Tensor | None


class LifelongNormalizer:
    """Running statistics of rows of one width, kept in float32 on the device of the first
    rows it sees."""

    def __init__(self, state: NormalizerState | None = None) -> None:
        self.count = 0.0
        self.mean: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        if state is not None:
            self.restore(state)

    def state(self) -> NormalizerState:
        """A detached copy of the statistics."""
        copy = None if self.mean is None else self.mean.clone()
        squares = None if self.squares is None else self.squares.clone()
        return NormalizerState(self.count, copy, squares)

    def restore(self, state: NormalizerState) -> None:
        """Put back statistics taken with :meth:`state` (copied: later updates, made in
        place, leave ``state`` as it was)."""
        self.count = state.count
        self.mean = None if state.mean is None else state.mean.clone()
        self.squares = None if state.squares is None else state.squares.clone()

    def update(self, rows: torch.Tensor) -> None:
        """Fold ``rows`` (n, width) into the statistics."""
        rows = rows.float()
        if self.mean is None:
            self.mean = torch.zeros(rows.shape[1], device=rows.device)
            self.squares = torch.zeros_like(self.mean)
        assert self.squares is not None
        rows = rows.to(self.mean.device)
        batch = rows.shape[0]
        total = self.count + batch
        shift = rows.mean(0) - self.mean
        self.mean += batch * shift / total
        within = batch * rows.var(0) if batch > 1 else torch.zeros_like(self.mean)
        self.squares += within + self.count * batch * shift.pow(2) / total
        self.count = total

    def std(self) -> torch.Tensor:
        """The running spread per feature."""
        assert self.squares is not None
        eps = torch.finfo(torch.float32).eps
        return (self.squares / (self.count - 1 + eps)).sqrt()

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` standardised: minus the running mean, over the spread (plus eps)."""
        assert self.mean is not None, "update the normalizer before using it"
        eps = torch.finfo(torch.float32).eps
        moved = rows.float().to(self.mean.device)
        return ((moved - self.mean) / (self.std() + eps)).to(rows.device)
