"""The editor contract: an editor object, owned by one edit stream, applies batches of
requests to a model and returns an :class:`EditRecord` that can undo them exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lm_edit.data.requests import EditRequest


@dataclass
class EditRecord:
    """What one apply step changed, how long it took, and how to undo it.

    ``originals`` holds a CPU copy of every parameter the step modified, taken before the
    step: :meth:`undo` writes them back bit for bit.
    """

    editor: str
    case_ids: list[str]
    originals: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def undo(self, model) -> None:
        """Restore every parameter this step modified to its exact pre-edit value.

        Undo the records of a stream in reverse order: restoring an early record also
        discards later edits of the same parameters.
        """
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, original in self.originals.items():
                params[name].copy_(original.to(params[name].device))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view (no tensors)."""
        return {
            "editor": self.editor,
            "case_ids": self.case_ids,
            "seconds": round(self.seconds, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
            "parameters": sorted(self.originals),
            **self.details,
        }


class Editor(Protocol):
    """An editor instance belongs to one stream; state it carries across batches lives on
    the instance, never in module globals."""

    name: str

    def apply(self, model, tokenizer, requests: list[EditRequest]) -> EditRecord:
        """Edit ``model`` in place so it knows ``requests``; return the undo record."""
        ...


@contextmanager
def recording(model, editor: str, requests: list[EditRequest]) -> Iterator[EditRecord]:
    """Time a step and track peak memory while it runs; the body fills ``originals``."""
    record = EditRecord(editor=editor, case_ids=[r.case_id for r in requests])
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    yield record
    record.seconds = time.perf_counter() - start
    record.peak_memory_bytes = (
        torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_peak()
    )


def _rss_peak() -> int | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None


def snapshot_parameter(model, name: str, record: EditRecord) -> torch.nn.Parameter:
    """Keep a pre-edit copy of parameter ``name`` in ``record`` (once) and return it."""
    param = model.get_parameter(name)
    if name not in record.originals:
        record.originals[name] = param.detach().to("cpu", copy=True)
    return param
