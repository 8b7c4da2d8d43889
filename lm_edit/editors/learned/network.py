"""MEND's gradient transform (Mitchell et al., ICLR 2022): one network per edited weight
shape, shared by the weights of that shape, that maps the rank-one factors of a weight's
gradient to the factors of its edit.

For a linear layer ``y = W u`` the gradient of a loss is ``Σ_t δ_t u_tᵀ`` over token
positions ``t`` (``u`` the layer's input, ``δ`` the loss gradient at its output). The
transform normalises each factor by running statistics gathered while training (mean and
standard deviation per feature), feeds the concatenation ``[u; δ]`` through a residual
MLP of low-rank layers (``z + relu(s_m ⊙ (U V z + b) + o_m)`` with a learned scale
``s_m`` and shift ``o_m`` per edited weight ``m``; ``U`` starts at zero, so the untrained
network is the identity) and splits the output back into ``ũ`` and ``δ̃``. The edit of
weight ``m`` is ``ΔW = Σ_t δ̃_t ũ_tᵀ``, applied as ``W - α_m ΔW`` with a learned step
size ``α_m`` per weight (:class:`MendNetwork`).
"""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-7
"""Added to the standard deviation before dividing (the reference's value)."""


def shape_key(in_features: int, out_features: int) -> str:
    """The name of the transform shared by weights of this (in, out) shape."""
    return f"{in_features}x{out_features}"


class LowRankResidual(nn.Module):
    """``z + relu(scale[m] ⊙ (U V z + b) + shift[m])``: one layer of the transform, with a
    scale and shift per edited weight (``mode``) that share it."""

    def __init__(self, dim: int, rank: int, n_modes: int, generator: torch.Generator) -> None:
        super().__init__()
        inner = min(rank, dim)
        self.up = nn.Parameter(torch.zeros(dim, inner))
        self.down = nn.Parameter(torch.randn(inner, dim, generator=generator))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.scale = nn.Parameter(torch.ones(n_modes, dim))
        self.shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, z: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (z @ self.down.T) @ self.up.T + self.bias
        pre = pre * self.scale[mode] + self.shift[mode]
        return z + pre.clamp(min=0)  # clamp, not relu: the reference keeps a gradient at 0


class RunningNorm(nn.Module):
    """Per-feature mean and variance of every row seen in training mode (merged batch by
    batch with Chan et al.'s update), used to standardise rows in both modes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("sum_sq", torch.zeros(dim))

    @torch.no_grad()
    def update(self, rows: torch.Tensor) -> None:
        """Merge the statistics of ``rows`` (n, dim) into the running ones."""
        n = rows.shape[0]
        if n == 0:
            return
        mean = rows.mean(0)
        sum_sq = ((rows - mean) ** 2).sum(0)
        before = float(self.count)
        total = before + n
        delta = mean - self.mean
        self.mean.add_(delta * (n / total))
        self.sum_sq.add_(sum_sq + delta**2 * (before * n / total))
        self.count.fill_(total)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if float(self.count) < 2:
            raise RuntimeError(
                f"MEND normalisation has seen {int(self.count)} rows; it needs 2 or more "
                "(the network was saved before any training step)."
            )
        std = (self.sum_sq / (self.count - 1)).sqrt().to(rows.dtype)
        return (rows - self.mean) / (std + EPSILON)


class GradientTransform(nn.Module):
    """The transform shared by every edited weight of one (in, out) shape."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_modes: int,
        rank: int,
        n_hidden: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        dim = in_features + out_features
        self.u_norm = RunningNorm(in_features)
        self.delta_norm = RunningNorm(out_features)
        self.layers = nn.ModuleList(
            LowRankResidual(dim, rank, n_modes, generator) for _ in range(n_hidden + 1)
        )

    def forward(
        self, u: torch.Tensor, delta: torch.Tensor, mode: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ũ, δ̃)`` for factor rows ``u`` (n, in) and ``delta`` (n, out); in training
        mode the rows first join the normalisation statistics."""
        u, delta = u.float(), delta.float()
        if self.training:
            self.u_norm.update(u)
            self.delta_norm.update(delta)
        z = torch.cat([self.u_norm(u), self.delta_norm(delta)], dim=-1)
        for layer in self.layers:
            z = layer(z, mode)
        return z.split([self.in_features, self.out_features], dim=-1)


class MendNetwork(nn.Module):
    """The transforms of one model's edited weights and their learned step sizes.

    ``shapes`` maps each edited parameter name, in order, to its (in, out) shape; weights
    of one shape share a transform and are told apart by their index among them (their
    ``mode``).
    """

    def __init__(
        self,
        shapes: dict[str, tuple[int, int]],
        rank: int,
        n_hidden: int,
        edit_lr: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.names = list(shapes)
        self.shapes = dict(shapes)
        members: dict[str, list[str]] = {}
        for name, (in_features, out_features) in shapes.items():
            members.setdefault(shape_key(in_features, out_features), []).append(name)
        self.modes = {name: group.index(name) for group in members.values() for name in group}
        generator = torch.Generator().manual_seed(seed)
        self.transforms = nn.ModuleDict()
        for key, group in members.items():
            in_features, out_features = shapes[group[0]]
            self.transforms[key] = GradientTransform(
                in_features, out_features, len(group), rank, n_hidden, generator
            )
        self.edit_lrs = nn.Parameter(torch.full((len(self.names),), float(edit_lr)))

    def transform(
        self, name: str, u: torch.Tensor, delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed factors of parameter ``name`` (moved to the network's device:
        a sharded model's factors come from the devices holding each layer)."""
        device = self.edit_lrs.device
        return self.transforms[shape_key(*self.shapes[name])](
            u.to(device), delta.to(device), self.modes[name]
        )

    def deltas(
        self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], condition: object = None
    ) -> dict[str, torch.Tensor]:
        """``α_m · Σ_t δ̃_t ũ_tᵀ`` as (out, in) for every parameter in ``factors``: the
        amount to subtract from each weight (MEND reads no ``condition``)."""
        out = {}
        for name, (u, delta) in factors.items():
            u_new, delta_new = self.transform(name, u, delta)
            out[name] = self.edit_lrs[self.names.index(name)] * (delta_new.T @ u_new)
        return out
