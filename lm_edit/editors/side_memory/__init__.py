"""WISE: a side memory beside one module, trained per edit, sharded and merged, with
activation-based routing between it and the main memory (:mod:`.adaptor`), TIES merging
(:mod:`.merging`) and the editor (:mod:`.editor`)."""

from lm_edit.editors.side_memory.adaptor import SideMemoryAdaptor
from lm_edit.editors.side_memory.editor import WiseConfig, WiseEditor

__all__ = ["SideMemoryAdaptor", "WiseConfig", "WiseEditor"]
