"""Editors that train on the edit requests: fine-tuning chosen weights (FT-L, FT-M,
:mod:`.editor`) and low-rank adapters through peft (LoRA, :mod:`.lora`), over one
objective and training loop (:mod:`.training`)."""

from lm_edit.editors.finetune.editor import FineTuneConfig, FineTuneEditor
from lm_edit.editors.finetune.lora import LoraEditor, LoraEditorConfig

__all__ = ["FineTuneConfig", "FineTuneEditor", "LoraEditor", "LoraEditorConfig"]
