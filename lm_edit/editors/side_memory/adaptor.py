"""WISE's side memory around one linear module (Wang et al., 2024, "WISE: Rethinking the
Knowledge Memory for Lifelong Model Editing of Large Language Models").

The wrapped module (``self.layer``) is the main memory and never changes. The side
memory is a copy of its weight that edits train; every ``save_freq`` edits it is filed
as a shard and a fresh copy starts, and every ``merge_freq`` edits the newest shards are
merged into one (:mod:`.merging`).

**Routing.** For an input the adaptor computes the main output and every memory's output
and measures, per memory, the activation distance ``||act(memory out) - act(main
out)||`` (``act`` the model's hidden activation, as WISE's reference) averaged over the
sequence. The side memory is used when its distance reaches ``act_ratio`` times the
smallest in-scope distance recorded while editing it; a shard replaces that choice when
its distance is larger still and reaches its own threshold. lm-edit takes the average
*causally*, per position over the positions up to it, so a position's choice does not
depend on padding or on what follows, and a pass that continues a key-value cache
carries the sums over (see :class:`Routing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

UNSET = 1e9
"""The threshold of a memory no edit has trained (never chosen)."""


@dataclass(frozen=True)
class MemoryState:
    """A copy of the adaptor's edit state, to restore after a batch is undone."""

    side: torch.Tensor
    side_acts: tuple[float, ...]
    shards: tuple[torch.Tensor, ...]
    shard_acts: tuple[float, ...]
    edits: int
    mask: torch.Tensor | None


class SideMemoryAdaptor(nn.Module):
    """Wraps ``layer`` (kept as ``self.layer``, unchanged) with WISE's side memory."""

    def __init__(self, layer: nn.Module, weight: torch.Tensor, activation: str, act_ratio: float):
        super().__init__()
        self.layer = layer
        self.original = weight.detach()  # (out, in) view of the wrapped weight
        self.side = nn.Parameter(self.original.clone(), requires_grad=False)
        self.activation = ACT2FN[activation]
        self.act_ratio = act_ratio
        self.side_acts: list[float] = []
        self.shards: list[torch.Tensor] = []
        self.shard_acts: list[float] = []
        self.edits = 0
        self.mask: torch.Tensor | None = None
        self.editing = False
        self.continuing = False
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._carry: dict[int, tuple[torch.Tensor, int]] = {}

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.layer, "bias", None)

    def memory_output(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The wrapped module's computation with ``weight`` in place of its own."""
        bias = self.bias
        return F.linear(
            hidden, weight.to(hidden.dtype), None if bias is None else bias.to(hidden.dtype)
        )

    def distance(self, main: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Per position, ``||act(other) - act(main)||`` (float32)."""
        return torch.linalg.vector_norm(
            self.activation(other.float()) - self.activation(main.float()), dim=-1
        )

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        main = self.layer(hidden, *args, **kwargs)
        if self.editing:
            side = self.memory_output(hidden, self.side)
            self.outputs = (main, side)
            return side
        memories = [(self.side, min(self.side_acts, default=UNSET))]
        memories += list(zip(self.shards, self.shard_acts, strict=True))
        if all(act >= UNSET for _, act in memories):
            return main
        out, best = main, None
        carry: dict[int, tuple[torch.Tensor, int]] = {}
        for index, (weight, act) in enumerate(memories):
            candidate = self.memory_output(hidden, weight)
            dist = self._running_mean(index, self.distance(main, candidate), carry)
            if best is None:
                take = dist >= act * self.act_ratio
                best = dist
            else:
                take = (dist > best) & (dist > act * self.act_ratio)
                best = torch.where(take, dist, best)
            out = torch.where(take.unsqueeze(-1), candidate.to(out.dtype), out)
        self._carry = carry
        return out

    def _running_mean(
        self, index: int, dist: torch.Tensor, carry: dict[int, tuple[torch.Tensor, int]]
    ) -> torch.Tensor:
        """Per position, the mean of ``dist`` over the positions up to it (with the sums
        of the previous pass when this one continues a cache)."""
        total = dist.cumsum(dim=1)
        count = torch.arange(1, dist.shape[1] + 1, device=dist.device, dtype=dist.dtype)
        previous = self._carry.get(index) if self.continuing else None
        if previous is not None and previous[0].shape[0] == dist.shape[0]:
            total = total + previous[0].to(dist.device).unsqueeze(1)
            count = count + previous[1]
        carry[index] = (total[:, -1].detach(), int(count[-1]))
        return total / count

    # -- edit state ------------------------------------------------------------------------

    def snapshot(self) -> MemoryState:
        """A copy of the edit state as it is now."""
        return MemoryState(
            self.side.detach().cpu().clone(),
            tuple(self.side_acts),
            tuple(self.shards),
            tuple(self.shard_acts),
            self.edits,
            None if self.mask is None else self.mask.clone(),
        )

    def restore(self, state: MemoryState) -> None:
        """Put the edit state back to ``state`` (from :meth:`snapshot`)."""
        with torch.no_grad():
            self.side.copy_(state.side.to(self.side.device))
        self.side_acts = list(state.side_acts)
        self.shards = list(state.shards)
        self.shard_acts = list(state.shard_acts)
        self.edits = state.edits
        self.mask = None if state.mask is None else state.mask.clone()

    def file_shard(self) -> None:
        """File the side memory as a shard and start a fresh copy of the main weight."""
        self.shards.append(self.side.detach().clone())
        self.shard_acts.append(min(self.side_acts, default=UNSET))
        with torch.no_grad():
            self.side.copy_(self.original)
        self.side_acts = []
