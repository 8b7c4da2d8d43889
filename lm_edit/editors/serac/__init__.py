"""SERAC (Mitchell et al., ICML 2022, "Memory-Based Model Editing at Scale"): edits kept
in an explicit memory, a trained scope classifier (:mod:`.classifier`) that decides
whether a request falls within an edit, and a counterfactual model that answers the
requests in scope with the retrieved edit before them (:mod:`.memory`); everything else
goes to the unedited model. ``lm-edit train serac`` trains the classifier
(:mod:`.training`, :mod:`.validation`); the editor (:mod:`.editor`) loads its
checkpoint (:mod:`.checkpoint`)."""

from lm_edit.editors.serac.editor import SeracConfig, SeracEditor

__all__ = ["SeracConfig", "SeracEditor"]
