"""MELO: LoRA blocks chosen per position by a vector database of edit keys: the database
and its rules (:mod:`.database`), the router and the routed LoRA ranks (:mod:`.routing`)
and the editor (:mod:`.editor`)."""

from lm_edit.editors.routed_lora.database import VectorDatabase
from lm_edit.editors.routed_lora.editor import MeloConfig, MeloEditor

__all__ = ["MeloConfig", "MeloEditor", "VectorDatabase"]
