"""The probes of an edited case, each with the answers it is judged against.

One :class:`ProbeItem` per prompt: ``reliability`` (the edit prompt), ``generality``
(each rephrase), ``locality`` and ``portability`` (each probe, with its dataset category).
``targets`` maps a slot to its acceptable answers, first one first:

* ``new``: the new object; ``true``: the old one (reliability, generality);
* ``gold``: the dataset's answer (locality: the fact that must survive; portability: the
  answer implied by the edit);
* ``unedited``: the unedited model's own greedy answer to a locality prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lm_edit.data.requests import EditRequest

NEW, TRUE, GOLD, UNEDITED = "new", "true", "gold", "unedited"
ARGMAX = "unedited_argmax"  # the unedited model's argmax along the forced gold answer
KINDS = ("reliability", "generality", "locality", "portability")


@dataclass(frozen=True)
class ProbeItem:
    """One prompt of one case and the answers (per slot) it is scored against."""

    case_id: str
    kind: str
    index: int
    category: str
    prompt: str
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``kind/index``: names the probe within its case."""
        return f"{self.kind}/{self.index}"


def category_slug(category: str) -> str:
    """A metric-name-safe form of a dataset category (``Subject_Aliasing`` ->
    ``subject_aliasing``)."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")


def _pair(request: EditRequest) -> dict[str, tuple[str, ...]]:
    targets = {NEW: (request.target_new,)}
    if request.target_true:
        targets[TRUE] = (request.target_true, *request.extra.get("target_true_aliases", ()))
    return targets


def case_probes(
    request: EditRequest, unedited: dict[tuple[str, int], str] | None = None
) -> list[ProbeItem]:
    """Every probe of ``request``, in a fixed order."""
    cid = request.case_id
    items = [ProbeItem(cid, "reliability", 0, "", request.prompt, _pair(request))]
    items += [
        ProbeItem(cid, "generality", i, "", prompt, _pair(request))
        for i, prompt in enumerate(request.rephrases)
    ]
    for i, probe in enumerate(request.locality):
        targets = {GOLD: (probe.answer, *probe.aliases), NEW: (request.target_new,)}
        if unedited is not None and (cid, i) in unedited:
            targets[UNEDITED] = (unedited[(cid, i)],)
        items.append(ProbeItem(cid, "locality", i, probe.category, probe.prompt, targets))
    items += [
        ProbeItem(
            cid,
            "portability",
            i,
            probe.category,
            probe.prompt,
            {GOLD: (probe.answer, *probe.aliases)},
        )
        for i, probe in enumerate(request.portability)
    ]
    return items
