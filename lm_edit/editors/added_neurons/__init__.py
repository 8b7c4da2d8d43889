"""Editors that add trained neurons beside a block's feed-forward layer: the wrapper that
adds the neurons' output to the MLP's (:mod:`.adaptor`), the teacher-forced sequences
they train on (:mod:`.sequences`), T-Patcher (:mod:`.patcher`: one neuron per mistaken
token, kept silent on a memory of other inputs) and CaliNET (:mod:`.calinet`: a block of
calibration memory slots per batch)."""

from lm_edit.editors.added_neurons.adaptor import NeuronAdaptor
from lm_edit.editors.added_neurons.calinet import CaliNetConfig, CaliNetEditor
from lm_edit.editors.added_neurons.patcher import PatcherConfig, PatcherEditor

__all__ = ["CaliNetConfig", "CaliNetEditor", "NeuronAdaptor", "PatcherConfig", "PatcherEditor"]
