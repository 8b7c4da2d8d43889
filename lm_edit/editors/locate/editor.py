"""The locate-then-edit editor: one implementation, configured into ROME, r-ROME, EMMET
(equality solver) or MEMIT (least-squares solver), on one layer or spread over several.

Per batch: optimise target values v* at the last edited layer, then for each edited
layer (keys recomputed after every layer's update) solve for ``ΔW`` with the configured
solver against that layer's key statistics ``C``, and add it to the MLP output weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch

from lm_edit.anatomy import ModelAnatomy, add_weight_delta
from lm_edit.editors.base import EditRecord, recording, snapshot_parameter
from lm_edit.editors.locate.keys import block_outputs, plain_keys, request_keys
from lm_edit.editors.locate.solvers import (
    equality_update,
    least_squares_update,
    regularised,
)
from lm_edit.editors.locate.templates import generate_context_templates
from lm_edit.editors.locate.values import ValueConfig, optimise_value
from lm_edit.requests import EditRequest
from lm_edit.stats import StatsSpec, second_moments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocateConfig(ValueConfig):
    """Hyperparameters of the locate-then-edit family (documented in editors/README.md).

    ``layers`` empty means: use ``layer_fraction`` of the model's depth (one layer).
    """

    layers: tuple[int, ...] = ()
    layer_fraction: float = 0.17
    solver: Literal["equality", "least_squares"] = "equality"
    consistent_keys: bool = True
    use_covariance: bool = True
    mom2_update_weight: float = 1.0
    emmet_lambda: float = 0.0
    stats_source: str = "auto"
    stats_samples: int = 1000
    stats_model_samples: int = 64
    stats_max_length: int = 128
    stats_ridge: float = 1e-4
    template_spec: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))


def resolve_layers(config: LocateConfig, num_layers: int) -> list[int]:
    """The layers to edit, validated against the model's depth."""
    layers = list(config.layers) or [
        max(0, min(num_layers - 1, round(config.layer_fraction * num_layers)))
    ]
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise ValueError(
            f"layers={bad} is outside the model, which has layers 0..{num_layers - 1}."
        )
    return sorted(layers)


class LocateEditor:
    """Configured instance for one stream; caches templates and statistics it computed."""

    def __init__(self, config: LocateConfig, *, name: str, anatomy: ModelAnatomy, seed: int = 0):
        self.name = name
        self.config = config
        self.anatomy = anatomy
        self.seed = seed
        self._templates: list[str] | None = None
        self._covariances: dict[int, torch.Tensor] | None = None

    @property
    def covariances(self) -> dict[int, torch.Tensor]:
        """Key statistics per layer (empty until :meth:`prepare` ran or when unused)."""
        return dict(self._covariances or {})

    def prepare(self, model, tokenizer) -> None:
        """Generate context templates and load key statistics (once per stream)."""
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        if self._templates is None:
            spec = [tuple(pair) for pair in self.config.template_spec]
            self._templates = generate_context_templates(model, tokenizer, spec, self.seed)
        if self._covariances is None:
            if self.config.use_covariance or self.config.solver == "least_squares":
                spec = StatsSpec(
                    source=self.config.stats_source,
                    samples=self.config.stats_samples,
                    model_samples=self.config.stats_model_samples,
                    max_length=self.config.stats_max_length,
                    seed=self.seed,
                )
                self._covariances = second_moments(model, tokenizer, self.anatomy, layers, spec)
            else:
                self._covariances = {}

    def apply(self, model, tokenizer, requests: list[EditRequest]) -> EditRecord:
        """Write ``requests`` into the model (one solve per edited layer)."""
        self.prepare(model, tokenizer)
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        with recording(model, self.name, requests) as record:
            values = [
                optimise_value(
                    model, tokenizer, self.anatomy, layers[-1], r, self._templates, self.config
                )
                for r in requests
            ]
            record.details["value_nll"] = [round(v.final_nll, 4) for v in values]
            device = next(model.parameters()).device
            shift = torch.stack([v.target - v.initial for v in values], dim=1).double().to(device)
            spread = len(layers) > 1
            goal = self._hidden(model, tokenizer, requests, layers[-1]) + shift if spread else None
            for position, layer in enumerate(layers):
                remaining = len(layers) - position
                if position:
                    shift = goal - self._hidden(model, tokenizer, requests, layers[-1])
                self._edit_layer(model, tokenizer, requests, layer, shift / remaining, record)
        return record

    def _hidden(self, model, tokenizer, requests, layer: int) -> torch.Tensor:
        return block_outputs(model, tokenizer, self.anatomy, layer, requests)

    def _edit_layer(
        self,
        model,
        tokenizer,
        requests: list[EditRequest],
        layer: int,
        residual: torch.Tensor,
        record: EditRecord,
    ) -> None:
        """Solve for this layer's update that adds ``residual`` on the requests' keys."""
        name = self.anatomy.mlp_out_name(layer)
        keys = request_keys(model, tokenizer, self.anatomy, layer, requests, self._templates)
        cov = self._covariance(layer, keys.shape[0], keys.device)
        if self.config.solver == "least_squares":
            update = least_squares_update(residual, keys, cov, lam=self.config.mom2_update_weight)
        else:
            constraint = keys
            if not self.config.consistent_keys:
                constraint = plain_keys(model, tokenizer, self.anatomy, layer, requests)
            update = equality_update(
                residual,
                constraint,
                cov,
                direction_keys=keys,
                lam=self.config.emmet_lambda,
                case_ids=[r.case_id for r in requests],
            )
        snapshot_parameter(model, f"{name}.weight", record)
        add_weight_delta(model.get_submodule(name), update, self.anatomy.transposed)
        record.details.setdefault("update_norm", {})[layer] = round(float(update.norm()), 6)

    def _covariance(self, layer: int, width: int, device) -> torch.Tensor:
        if not self.config.use_covariance and self.config.solver == "equality":
            return torch.eye(width, dtype=torch.float64, device=device)
        cov = self._covariances[layer].to(device)
        return regularised(cov, self.config.stats_ridge)
