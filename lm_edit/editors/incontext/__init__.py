"""In-context editing (IKE, Zheng et al., 2023): demonstrations built from the edits
(:mod:`.demonstrations`), retrievers (:mod:`.retrieval`), the memory that rewrites every
request as a prompt hook (:mod:`.memory`) and the editor (:mod:`.editor`)."""

from lm_edit.editors.incontext.editor import InContextConfig, InContextEditor

__all__ = ["InContextConfig", "InContextEditor"]
