"""Editors that learn to edit: KE (:mod:`.ke_editor`, :mod:`.ke_network`,
:mod:`.ke_training`) and MEND's gradient transform (:mod:`.network`), the factors it
transforms (:mod:`.factors`), its checkpoints (:mod:`.checkpoint`), the editor
(:mod:`.editor`) and the training behind ``lm-edit train mend`` (:mod:`.training`, with
its objective, validation and output folder in :mod:`.objective`, :mod:`.validation` and
:mod:`.run_folder`, and the command line's loading in :mod:`.command`)."""

from lm_edit.editors.learned.editor import MendConfig, MendEditor
from lm_edit.editors.learned.ke_editor import KeConfig, KeEditor
from lm_edit.editors.learned.network import MendNetwork

__all__ = ["KeConfig", "KeEditor", "MendConfig", "MendEditor", "MendNetwork"]
