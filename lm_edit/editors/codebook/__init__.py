"""Editors that keep edits in a codebook beside the weights: GRACE's discrete key-value
adaptor (:mod:`.adaptor`), the rules that place a new key (:mod:`.rules`) and the editor
that trains the values (:mod:`.editor`)."""

from lm_edit.editors.codebook.adaptor import CodebookAdaptor
from lm_edit.editors.codebook.editor import GraceConfig, GraceEditor

__all__ = ["CodebookAdaptor", "GraceConfig", "GraceEditor"]
