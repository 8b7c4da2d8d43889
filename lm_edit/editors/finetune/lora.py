"""LoRA: train low-rank adapters (peft's LoRA layers) on chosen linear modules with the
objective of :mod:`.training`.

``lora_target_modules`` names modules as peft does (a module matches when its path is the
name or ends with ``"." + name``); ``layers`` restricts them to those blocks (empty: every
block, and modules outside the blocks too). Each matched module is wrapped in a peft LoRA
layer of rank ``rank``, scaling ``lora_alpha / rank`` and dropout ``lora_dropout`` (active
while training only), with peft's initialisation (B = 0, so training starts from the
unedited model).

``merge: true`` (default): after training, ``B A · scaling`` is added to each wrapped
weight and the original modules are put back, so the edit is a plain weight change (the
weights are snapshotted first). ``merge: false``: the LoRA layers stay in the model
(recorded as module replacements, so undo puts the original modules back); a later batch
wraps the previous batch's LoRA layer in a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D

from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.training import frozen, seeded
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.finetune.training import TrainingConfig, train

ADAPTER = "edit"
"""The adapter name inside every LoRA layer this editor adds."""


@dataclass(frozen=True)
class LoraEditorConfig(TrainingConfig, EditorConfig):
    """Hyperparameters of LoRA editing (documented in editors/README.md)."""

    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    layers: tuple[int, ...] = argument((), ge=0, help="blocks to adapt; empty: all")
    rank: int = argument(8, ge=1)
    lora_alpha: float = argument(32.0, gt=0)
    lora_dropout: float = argument(0.1, ge=0, lt=1)
    merge: bool = True


@register_editor("lora")
class LoraEditor(Editor):
    """Adds LoRA layers, trains them, and merges them into the weights or keeps them."""

    config_class = LoraEditorConfig
    config: LoraEditorConfig
    # On the tiny random test models, LoRA on the attention projections moves every
    # prompt to the latest target; on the MLP input projection each edit stays its own.
    quick_settings = {
        "lr": 0.05,
        "num_steps": 20,
        "layers": [2, 3],
        "lora_target_modules": ["up_proj"],
    }

    def edit(
        self, model: nn.Module, tokenizer, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Train fresh LoRA layers on ``requests``; merge or keep them."""
        paths = self.target_paths(model)
        device = next(model.parameters()).device
        with frozen(model), seeded(self.seed, device):
            wrappers = {path: self._wrap(model.get_submodule(path)) for path in paths}
            if self.config.merge:
                for name in _base_weight_names(model, wrappers.values()):
                    record.snapshot(model, name)
                with _swapped(model, wrappers):
                    result = self._train(model, tokenizer, requests, wrappers)
                    for wrapper in wrappers.values():
                        wrapper.merge(adapter_names=[ADAPTER])
            else:
                for path, wrapper in wrappers.items():
                    record.set_module(model, path, wrapper)
                result = self._train(model, tokenizer, requests, wrappers)
        for wrapper in wrappers.values():
            wrapper.requires_grad_(False)
        record.details.update(
            lora_modules=paths, train_loss=round(result.loss, 4), train_passes=result.passes
        )

    def target_paths(self, model: nn.Module) -> list[str]:
        """Paths of the modules to wrap; a target name that matches no linear module, or
        layers that hold none, raise an error naming what the model has."""
        lora_layer = _lora_layer_type()
        candidates: list[str] = []
        inside_lora: list[str] = []
        for path, module in model.named_modules():
            if any(path.startswith(prefix) for prefix in inside_lora):
                continue
            if isinstance(module, lora_layer):
                inside_lora.append(path + ".")
            elif not isinstance(module, (nn.Linear, Conv1D)):
                continue
            candidates.append(path)
        targets = self.config.lora_target_modules
        missing = [t for t in targets if not any(_matches(p, t) for p in candidates)]
        if missing or not targets:
            names = list(dict.fromkeys(p.rpartition(".")[2] for p in candidates))
            raise ValueError(
                f"lora_target_modules={list(missing or targets)}: no such module; this "
                f"model's linear layers are: {', '.join(names)}."
            )
        matched = [p for p in candidates if any(_matches(p, t) for t in targets)]
        if self.config.layers:
            depth = self.anatomy.num_layers(model)
            bad = [layer for layer in self.config.layers if layer >= depth]
            if bad:
                raise ValueError(
                    f"layers={bad} is outside the model, which has layers 0..{depth - 1}."
                )
            prefixes = tuple(f"{self.anatomy.layer_name(i)}." for i in self.config.layers)
            matched = [p for p in matched if p.startswith(prefixes)]
        return matched

    def _wrap(self, module: nn.Module) -> nn.Module:
        """A peft LoRA layer around ``module`` (nn.Linear, GPT-2's Conv1D or a LoRA layer)."""
        from peft import LoraConfig
        from peft.tuners.lora.layer import dispatch_default

        config = self.config
        base = module.get_base_layer() if isinstance(module, _lora_layer_type()) else module
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            fan_in_fan_out=isinstance(base, Conv1D),
        )
        wrapper = dispatch_default(
            module,
            ADAPTER,
            lora,
            r=config.rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
        )
        if wrapper is None:
            raise ValueError(f"LoRA cannot wrap a {type(module).__name__}.")
        return wrapper

    def _train(self, model, tokenizer, requests, wrappers: dict[str, nn.Module]):
        parameters = []
        for wrapper in wrappers.values():
            wrapper.lora_dropout[ADAPTER].train()  # not the wrapped layers' own dropout
            for name in ("lora_A", "lora_B"):
                adapter = getattr(wrapper, name)[ADAPTER]
                adapter.requires_grad_(True)
                parameters.extend(adapter.parameters())
        result = train(model, tokenizer, requests, parameters, self.config)
        for wrapper in wrappers.values():
            wrapper.lora_dropout[ADAPTER].eval()
        return result


def _matches(path: str, target: str) -> bool:
    return path == target or path.endswith("." + target)


def _lora_layer_type() -> type:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise ImportError("editor=lora needs peft: pip install peft") from exc
    return LoraLayer


def _base_weight_names(model: nn.Module, wrappers) -> list[str]:
    """Names (in ``model``) of the weights the wrappers' merge will change."""
    by_identity = {id(p): name for name, p in model.named_parameters()}
    return [by_identity[id(w.get_base_layer().weight)] for w in wrappers]


@contextmanager
def _swapped(model: nn.Module, modules: dict[str, nn.Module]) -> Iterator[None]:
    """Put ``modules`` at their paths for the body only; the originals return afterwards."""
    scratch = EditRecord(editor="lora", case_ids=[])
    try:
        for path, module in modules.items():
            scratch.set_module(model, path, module)
        yield
    finally:
        scratch.undo(model)
