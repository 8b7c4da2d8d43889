"""Lifelong editing at scale: UltraEdit (:mod:`.editor`), its running feature statistics
(:mod:`.normalizer`) and its closed-form update (:mod:`.update`)."""

from lm_edit.editors.lifelong.editor import UltraEditConfig, UltraEditEditor

__all__ = ["UltraEditConfig", "UltraEditEditor"]
