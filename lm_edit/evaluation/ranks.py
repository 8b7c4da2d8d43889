"""Data-parallel evaluation: every process edits its own copy of the model, so the copies
must agree before any of them is scored.

Under ``accelerate launch`` (or ``torchrun``) each rank loads the model and applies the
same edits with the same seed; the edits are deterministic, so the copies should be
bit-identical. :func:`check_ranks_agree` proves it: each rank hashes every byte of its
weights (:func:`lm_edit.core.fingerprint.weights_digest`) and the digests are gathered;
any difference stops the run with the ranks named, before lm-eval scores anything.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from lm_edit.core.fingerprint import weights_digest

logger = logging.getLogger(__name__)


class RanksDisagreeError(RuntimeError):
    """The processes of a data-parallel run hold different edited weights."""


def check_ranks_agree(
    accelerator: Any, model: nn.Module, what: str = "edited weights"
) -> str | None:
    """Gather every rank's weights digest and raise :class:`RanksDisagreeError` unless
    all agree; returns the common digest (``None`` in a single process, where nothing is
    hashed: a 70B model's weights take a while to read)."""
    if accelerator is None or accelerator.num_processes < 2:
        return None
    from accelerate.utils import gather_object

    digest = weights_digest(model)

    digests = gather_object([digest])
    if len(set(digests)) != 1:
        listing = ", ".join(f"rank {rank}: {d[:12]}" for rank, d in enumerate(digests))
        raise RanksDisagreeError(
            f"The {what} differ between processes ({listing}). Every rank must apply the "
            "same edits: check that edit_seed, the edit data and the editor's settings are "
            "the same everywhere, and that the statistics cache is shared or absent."
        )
    logger.info("%s identical on all %d ranks (%s)", what, len(digests), digest[:12])
    return digest
