"""Which blocks an editor changes: the hyperparameters every layer-wise editor shares and
the rule for models without per-family settings."""

from __future__ import annotations

from dataclasses import dataclass

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
