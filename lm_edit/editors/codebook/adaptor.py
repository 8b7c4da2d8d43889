"""The GRACE adaptor: a wrapper around one linear module that holds a codebook of keys,
deferral radii and values, and replaces the module's output at every token whose input
lies within the radius of its nearest key.

Every position of every sequence is checked on its own (the module's input at that
token against the keys): the edit fires at the prompt's last token whether the prompt is
scored alone, followed by an answer (lm-eval's log-likelihood requests) or continued by
generation with a key-value cache. Positions that match no key get the wrapped module's
output unchanged, bit for bit; when no position matches the output tensor is the wrapped
module's own. Padding needs no mask: a padded position that happened to match a key only
changes its own output, which attention masks out (left padding) or causality keeps from
the real tokens (right padding).

The codebook lives in the module's state: ``keys`` and ``radii`` are buffers, ``values``
a parameter (float32 all, trained only while an edit runs), ``labels`` a list; it grows
with every edit of a stream, and :meth:`CodebookAdaptor.snapshot` /
:meth:`CodebookAdaptor.restore` take one batch's growth back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lm_edit.editors.codebook.rules import SPLIT_MARGIN, Placement, distances


@dataclass(frozen=True)
class CodebookState:
    """A copy of a codebook (CPU tensors), to restore after a batch is undone."""

    keys: torch.Tensor
    radii: torch.Tensor
    values: torch.Tensor
    labels: tuple[str, ...]


class CodebookAdaptor(nn.Module):
    """Wraps ``layer`` (kept as ``self.layer``, unchanged); keys have the layer's input
    width, values its output width."""

    def __init__(self, layer: nn.Module, key_width: int, value_width: int) -> None:
        super().__init__()
        self.layer = layer
        device = next(layer.parameters()).device
        self.register_buffer("keys", torch.zeros(0, key_width, device=device))
        self.register_buffer("radii", torch.zeros(0, device=device))
        self.values = nn.Parameter(torch.zeros(0, value_width, device=device), requires_grad=False)
        self.labels: list[str] = []

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.layer(hidden, *args, **kwargs)
        if len(self) == 0:
            return out
        query = hidden.detach().reshape(-1, hidden.shape[-1])
        dist, nearest = distances(query, self.keys).min(dim=1)
        hit = dist <= self.radii[nearest]
        if not bool(hit.any()):
            return out
        shape = (*out.shape[:-1], self.values.shape[1])
        chosen = self.values[nearest].to(out.dtype).reshape(shape)
        return torch.where(hit.reshape(*out.shape[:-1], 1), chosen, out)

    # -- growing the codebook ------------------------------------------------------------

    def insert(
        self,
        placement: Placement,
        query: torch.Tensor,
        label: str,
        value: torch.Tensor,
        eps: float,
        expand: str,
    ) -> int:
        """Carry out ``placement`` for ``query`` (see :mod:`.rules`); returns the row whose
        value is to be trained for this edit. ``value`` initialises a new row."""
        query = query.detach().float().view(1, -1).to(self.keys.device)
        value = value.detach().float().view(1, -1).to(self.values.device)
        i, d = placement.nearest, placement.distance
        if placement.action in ("add", "split"):
            self.keys = torch.cat([self.keys, query])
            self.radii = torch.cat([self.radii, self.radii.new_tensor([eps])])
            self.values = nn.Parameter(
                torch.cat([self.values.detach(), value]), requires_grad=False
            )
            self.labels.append(label)
            if placement.action == "split":
                self.radii[i] = min(float(self.radii[i]), d / 2 - SPLIT_MARGIN)
                self.radii[-1] = d / 2
            return len(self) - 1
        if placement.action == "relabel":
            self.labels[i] = label
            with torch.no_grad():
                self.values[i] = value[0]
            return i
        if d > float(self.radii[i]):  # expand
            if expand == "moving_average":
                self.keys[i] = 0.5 * self.keys[i] + 0.5 * query[0]
            self.radii[i] = d
        return i

    # -- undo ----------------------------------------------------------------------------

    def snapshot(self) -> CodebookState:
        """A copy of the codebook as it is now."""
        return CodebookState(
            self.keys.detach().cpu().clone(),
            self.radii.detach().cpu().clone(),
            self.values.detach().cpu().clone(),
            tuple(self.labels),
        )

    def restore(self, state: CodebookState) -> None:
        """Put the codebook back to ``state`` (from :meth:`snapshot`)."""
        device = self.keys.device
        self.keys = state.keys.to(device).clone()
        self.radii = state.radii.to(device).clone()
        self.values = nn.Parameter(state.values.to(device).clone(), requires_grad=False)
        self.labels = list(state.labels)
