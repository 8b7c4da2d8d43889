"""Where a model's weights live: refusing models whose weights are not in memory."""

from __future__ import annotations

import torch
from torch import nn


def input_device(model: nn.Module) -> torch.device:
    """Where a forward pass's token ids go: the device of the first weight (the input
    embedding), as for transformers' ``model.device``."""
    return next(model.parameters()).device


def module_device(module: nn.Module, fallback: torch.device) -> torch.device:
    """The device holding ``module``'s weights (its blocks may sit on several devices when
    the model is sharded): where tensors that meet its activations belong."""
    for weight in module.parameters():
        return weight.device
    return fallback


class OffloadedWeightsError(RuntimeError):
    """Some blocks' weights are offloaded (kept on disk or in a side map by accelerate and
    loaded at each forward), so an edit could not write them."""


def offloaded_modules(model: nn.Module) -> list[str]:
    """Names of the top-most modules whose weights are all on the meta device (``""`` for
    the whole model), and of modules holding any other weight there."""
    found: list[str] = []
    for name, module in model.named_modules():
        if found == [""]:
            break
        if any(name.startswith(kept + ".") for kept in found):
            continue
        weights = list(module.parameters())
        wholly = bool(weights) and all(w.is_meta for w in weights)
        if wholly or any(w.is_meta for w in module.parameters(recurse=False)):
            found.append(name)
    return found


def require_weights_in_memory(model: nn.Module) -> None:
    """Raise :class:`OffloadedWeightsError`, naming the modules, when any weight of
    ``model`` is offloaded."""
    offloaded = offloaded_modules(model)
    if offloaded:
        shown = ", ".join(offloaded[:4]) + (
            f" and {len(offloaded) - 4} more" if len(offloaded) > 4 else ""
        )
        raise OffloadedWeightsError(
            f"{shown}: the weights are offloaded (on the meta device, loaded by accelerate "
            "at each forward), so an edit cannot write them. Give every block a GPU or the "
            "CPU: load with a device_map or max_memory that keeps the model in memory "
            "(no 'disk' entries, and with parallelize=True enough max_memory_per_gpu or "
            "max_cpu_memory for the whole model)."
        )
