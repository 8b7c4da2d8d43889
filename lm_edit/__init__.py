"""lm-edit: model editing for Hugging Face causal LMs, evaluated with lm-evaluation-harness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EditRecord", "EditRequest", "EditStream", "Probe", "edit", "known_editors"]

if TYPE_CHECKING:
    from lm_edit.api import edit
    from lm_edit.data.requests import EditRequest, Probe
    from lm_edit.editors import EditRecord, known_editors
    from lm_edit.stream import EditStream

_LAZY = {
    "edit": "lm_edit.api",
    "EditRecord": "lm_edit.editors",
    "known_editors": "lm_edit.editors",
    "EditRequest": "lm_edit.data.requests",
    "Probe": "lm_edit.data.requests",
    "EditStream": "lm_edit.stream",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``import lm_edit`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lm_edit' has no attribute {name!r}")
