"""The locate-then-edit family (ROME, r-ROME, MEMIT, EMMET, AlphaEdit, PMET): one editor
(:mod:`.editor`) over keys (:mod:`.keys`), target values (:mod:`.values`) and solvers
(:mod:`.solvers`)."""

from lm_edit.editors.locate.editor import LocateConfig, LocateEditor

__all__ = ["LocateConfig", "LocateEditor"]
