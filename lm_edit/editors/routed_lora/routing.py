"""How MELO's LoRA blocks are chosen inside one forward pass.

:class:`RouterAdaptor` wraps the router module (MELO's "grace layer"): its output passes
through unchanged, and at every position it is looked up in the
:class:`~.database.VectorDatabase`. A sequence uses, from each position on, the block of
the latest position that fell inside a cluster, and no block before the first such
position: an edit keyed at its prompt's last token routes that token and the answer
after it, whether lm-eval scores prompt and answer as one sequence or generates from the
prompt. A pass that continues a key-value cache (generation after the first step)
carries each row's block over from the previous pass (:class:`Routing` learns this from
a pre-hook on the model, :func:`lm_edit.core.hooks.watch_cache`).

:class:`RoutedRanks` wraps a peft LoRA layer's ``lora_A``: its output (one column per
rank) is multiplied by the routing mask, which keeps the ranks of each position's block,
scaled by ``num_block``, and zeroes the rest, so a position routed to no block gets
exactly the base layer's output. MELO's dynamic LoRA scales the selected block of A and
of B by ``sqrt(num_block)`` each; the product, its output and its gradients are the same.
"""

from __future__ import annotations

import torch
from torch import nn

from lm_edit.editors.routed_lora.database import NO_BLOCK, VectorDatabase


class Routing:
    """The blocks chosen for the current pass, shared by the router and the LoRA layers
    (a plain object, so it is in no module's state)."""

    def __init__(self, num_block: int, rank_per_block: int) -> None:
        self.num_block = num_block
        self.rank_per_block = rank_per_block
        self.blocks: torch.Tensor | None = None
        self.continuing = False

    def follow(self, found: torch.Tensor) -> torch.Tensor:
        """Per position, the block of the latest routed position at or before it
        (``found`` is (rows, positions), ``NO_BLOCK`` where nothing matched); a
        continuing pass starts each row from the previous pass's last block."""
        rows, length = found.shape
        carried = None
        if self.continuing and self.blocks is not None and self.blocks.shape[0] == rows:
            carried = self.blocks[:, -1:].to(found.device)
            found = torch.cat([carried, found], dim=1)
        positions = torch.arange(found.shape[1], device=found.device).expand_as(found)
        latest = torch.where(found != NO_BLOCK, positions, -1).cummax(dim=1).values
        followed = torch.where(
            latest >= 0, found.gather(1, latest.clamp(min=0)), torch.full_like(found, NO_BLOCK)
        )
        return followed if carried is None else followed[:, 1:]

    def mask(
        self, rows: int, length: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """(rows, length, ranks): ``num_block`` on the ranks of each position's block, 0
        elsewhere."""
        if self.blocks is None or tuple(self.blocks.shape) != (rows, length):
            raise RuntimeError(
                "MELO's LoRA layer ran without the router's blocks for this pass: the router "
                "module must run before every LoRA layer (a lower block)."
            )
        rank_block = torch.arange(self.num_block * self.rank_per_block, device=device)
        rank_block = rank_block // self.rank_per_block
        chosen = self.blocks.to(device).unsqueeze(-1) == rank_block
        return chosen.to(dtype) * float(self.num_block)


class RouterAdaptor(nn.Module):
    """Wraps the router module (kept as ``self.layer``; output unchanged) and routes
    each position through ``database``."""

    def __init__(self, layer: nn.Module, database: VectorDatabase, routing: Routing) -> None:
        super().__init__()
        self.layer = layer
        self.database = database
        self.routing = routing

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.layer(hidden, *args, **kwargs)
        rows, length = out.shape[0], out.shape[1]
        queries = out.detach().reshape(rows * length, -1).float()
        found = self.database.route(queries).view(rows, length)
        self.routing.blocks = self.routing.follow(found)
        return out


class RoutedRanks(nn.Module):
    """A peft ``lora_A`` (kept as ``self.linear``) whose rank outputs are masked by the
    routing of the current pass."""

    def __init__(self, linear: nn.Module, routing: Routing) -> None:
        super().__init__()
        self.linear = linear
        self.routing = routing

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped ``lora_A`` weight (peft reads it for dtype casts)."""
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        mask = self.routing.mask(out.shape[0], out.shape[1], out.device, out.dtype)
        return out * mask
