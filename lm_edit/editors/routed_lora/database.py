"""MELO's vector database (Yu et al., 2024, "MELO: Enhancing Model Editing with
Neuron-Indexed Dynamic LoRA"): clusters of keys, each key pointing at the LoRA block
that was trained for it.

A cluster has a centre, a radius and the label (the edit's answer) it stands for; its
points are the keys that joined it, each with the block it routes to. A query is routed
to the nearest cluster's nearest point when it lies within that cluster's radius, and
to no block otherwise. A new key with label ``y`` (distance ``d`` to the nearest centre
``i``, radius ``r_i``, initial radius ``r0``):

* no cluster, or ``d > r_i + r0``: a new cluster around the key, radius ``r0``;
* ``y`` equals cluster ``i``'s label: the key joins cluster ``i``, whose centre becomes
  the mean of its points and whose radius the largest distance of a point to it (at
  least ``r0``);
* otherwise a new cluster around the key, and the two are **split**: cluster ``i``'s
  radius becomes ``d/2 - 1e-5`` and the new one's ``d/2 + 1e-5``; cluster ``i`` forgets
  the points now outside its radius (keeping its centre, routed to no block, when none
  is left).

Distances are Euclidean, computed pair by pair (:func:`~lm_edit.editors.codebook.rules.
distances`), so a key's distance to itself is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lm_edit.editors.codebook.rules import SPLIT_MARGIN, distances

NO_BLOCK = -1
"""The block of a query no cluster covers (and of a centre kept after a split)."""


@dataclass
class Cluster:
    """One cluster: centre, radius, label and its points (keys with their blocks)."""

    centre: torch.Tensor
    radius: float
    label: str
    keys: list[torch.Tensor] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)

    def copy(self) -> Cluster:
        return Cluster(
            self.centre.clone(),
            self.radius,
            self.label,
            [k.clone() for k in self.keys],
            list(self.blocks),
        )


class VectorDatabase:
    """The clusters, with routing (:meth:`route`) and MELO's insertion rules
    (:meth:`insert`)."""

    def __init__(self, init_radius: float) -> None:
        self.init_radius = init_radius
        self.clusters: list[Cluster] = []
        self.splits = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self.clusters)

    def route(self, queries: torch.Tensor) -> torch.Tensor:
        """The block each row of ``queries`` is routed to (``NO_BLOCK`` when none)."""
        blocks = torch.full((queries.shape[0],), NO_BLOCK, dtype=torch.long, device=queries.device)
        if not self.clusters:
            return blocks
        centres = torch.stack([c.centre for c in self.clusters]).to(queries.device)
        radii = queries.new_tensor([c.radius for c in self.clusters], dtype=torch.float32)
        dist, nearest = distances(queries, centres).min(dim=1)
        inside = (dist <= radii[nearest]).nonzero().flatten()
        for row in inside.tolist():
            cluster = self.clusters[int(nearest[row])]
            keys = torch.stack(cluster.keys).to(queries.device)
            point = int(distances(queries[row : row + 1], keys)[0].argmin())
            blocks[row] = cluster.blocks[point]
        return blocks

    def insert(self, key: torch.Tensor, label: str, block: int) -> str:
        """Add ``key`` (routed to ``block``) by the rules above; returns the action
        ("add", "join" or "split")."""
        key = key.detach().float().flatten().cpu()
        if not self.clusters:
            self._add(key, label, block)
            return "add"
        centres = torch.stack([c.centre for c in self.clusters])
        dist, nearest = distances(key.view(1, -1), centres)[0].min(dim=0)
        d, i = float(dist), int(nearest)
        cluster = self.clusters[i]
        if d > cluster.radius + self.init_radius:
            self._add(key, label, block)
            return "add"
        if cluster.label == label:
            self._join(cluster, key, block)
            return "join"
        self._add(key, label, block)
        self._split(cluster, self.clusters[-1], d)
        return "split"

    def _add(self, key: torch.Tensor, label: str, block: int) -> None:
        self.clusters.append(Cluster(key.clone(), self.init_radius, label, [key.clone()], [block]))

    def _join(self, cluster: Cluster, key: torch.Tensor, block: int) -> None:
        cluster.keys.append(key.clone())
        cluster.blocks.append(block)
        keys = torch.stack(cluster.keys)
        cluster.centre = keys.mean(dim=0)
        spread = float(distances(keys, cluster.centre.view(1, -1)).max())
        cluster.radius = max(spread, self.init_radius)

    def _split(self, old: Cluster, new: Cluster, d: float) -> None:
        old.radius = d / 2 - SPLIT_MARGIN
        new.radius = d / 2 + SPLIT_MARGIN
        keys = torch.stack(old.keys)
        inside = (distances(keys, old.centre.view(1, -1))[:, 0] <= old.radius).tolist()
        kept = [(k, b) for k, b, keep in zip(old.keys, old.blocks, inside, strict=True) if keep]
        self.forgotten += len(old.keys) - len(kept)
        if not kept:
            kept = [(old.centre.clone(), NO_BLOCK)]
        old.keys, old.blocks = [k for k, _ in kept], [b for _, b in kept]
        self.splits += 1

    # -- undo ------------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[Cluster], int, int]:
        """A copy of the database as it is now."""
        return [c.copy() for c in self.clusters], self.splits, self.forgotten

    def restore(self, state: tuple[list[Cluster], int, int]) -> None:
        """Put the database back to ``state`` (from :meth:`snapshot`)."""
        clusters, self.splits, self.forgotten = state
        self.clusters = [c.copy() for c in clusters]
