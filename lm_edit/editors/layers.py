"""Which blocks an editor changes: the hyperparameters every layer-wise editor shares and
the rule for models without per-family settings."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lm_edit.core.arguments import argument


@dataclass(frozen=True)
class LayerChoice:
    """``layers`` empty means: ``layer_count`` consecutive layers ending at layer
    ``round(layer_fraction * depth)`` (the rule for models without family settings)."""

    layers: tuple[int, ...] = argument((), ge=0)
    layer_fraction: float = argument(0.17, ge=0, le=1)
    layer_count: int = argument(1, ge=1)


def resolve_layers(config: LayerChoice, num_layers: int) -> list[int]:
    """The layers to edit, validated against the model's depth."""
    layers = list(config.layers)
    if not layers:
        last = max(0, min(num_layers - 1, round(config.layer_fraction * num_layers)))
        layers = list(range(max(0, last - config.layer_count + 1), last + 1))
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise ValueError(
            f"layers={bad} is outside the model, which has layers 0..{num_layers - 1}."
        )
    return sorted(set(layers))


def one_block(layer: int | None, layer_fraction: float, num_layers: int, editor: str) -> int:
    """The one block an editor wraps: ``layer``, or ``round(layer_fraction * depth)``
    without it; validated against the model's depth."""
    if layer is None:
        layer = max(0, min(num_layers - 1, round(layer_fraction * num_layers)))
    if layer >= num_layers:
        raise ValueError(
            f"{editor}: layer={layer} is outside the model, which has layers 0..{num_layers - 1}."
        )
    return layer


def check_module_kinds(owner: str, modules: tuple[str, ...], allowed: str) -> None:
    """Refuse an empty or repeated choice of MLP projections (``allowed`` names them)."""
    if not modules or len(set(modules)) != len(modules):
        raise ValueError(f"{owner}: modules={list(modules)} must name {allowed}, each once.")


def mlp_module_path(anatomy, layer: int, module: str) -> str:
    """Path of block ``layer``'s MLP input (``mlp_in``) or output (``mlp_out``) projection."""
    return anatomy.mlp_in_name(layer) if module == "mlp_in" else anatomy.mlp_out_name(layer)


def mlp_gate_path(model: nn.Module, anatomy, layer: int) -> str:
    """Path of block ``layer``'s MLP gate projection: the sibling of the input projection
    whose name says ``gate`` and whose weight has the input projection's shape (Llama's
    ``gate_proj``)."""
    up_path = anatomy.mlp_in_name(layer)
    parent, _, _ = up_path.rpartition(".")
    up = model.get_submodule(up_path)
    for name, module in model.get_submodule(parent).named_children():
        weight = getattr(module, "weight", None)
        path = f"{parent}.{name}"
        if path == up_path or weight is None or "gate" not in name.lower():
            continue  # a fused gate-up projection is the input projection itself
        if weight.shape == up.weight.shape:
            return path
    raise ValueError(
        f"mlp_gate: block {layer} has no gate projection beside {up_path} (the model's MLP "
        "is not gated); edit mlp_in or mlp_out instead."
    )
