"""Knowledge neurons (KN, Dai et al., 2022): locate the MLP neurons that express a fact by
integrated gradients (:mod:`.attribution`) and rewrite their value vectors
(:mod:`.editor`)."""

from lm_edit.editors.neurons.editor import KnowledgeNeuronsConfig, KnowledgeNeuronsEditor

__all__ = ["KnowledgeNeuronsConfig", "KnowledgeNeuronsEditor"]
