"""The locate-then-edit editor: one implementation of the preservation-memorisation
objective, configured into ROME, r-ROME, EMMET, MEMIT, AlphaEdit or PMET.

Two independent choices make an editor:

* the **solver** (``solver``): ``equality`` (ROME for one fact, EMMET for a batch),
  ``least_squares`` (MEMIT, PMET) or ``null_space`` (AlphaEdit); see ``solvers.py``;
* the **distribution** (``layers``): one layer, or the residual spread over several, the
  last layer's target reached in steps with keys recomputed after every layer's update.

Per batch: optimise target values v* at the last edited layer, then for each edited layer
solve for ``ΔW`` against that layer's key statistics and add it to the MLP output weight.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from lm_edit.core.anatomy import ModelAnatomy, add_weight_delta
from lm_edit.core.arguments import argument
from lm_edit.core.record import EditRecord
from lm_edit.core.stats import StatsSpec, derived, second_moment_files
from lm_edit.data.requests import EditRequest
from lm_edit.editors.base import Editor, EditorConfig, register_editor
from lm_edit.editors.layers import LayerChoice, resolve_layers
from lm_edit.editors.locate.keys import outputs_at_subject, plain_keys, request_keys
from lm_edit.editors.locate.solvers import (
    equality_update,
    least_squares_update,
    null_space_projector,
    null_space_update,
    regularised,
)
from lm_edit.editors.locate.templates import generate_context_templates
from lm_edit.editors.locate.value_cache import load_value, save_value, value_path, weights_digest
from lm_edit.editors.locate.values import ValueConfig, ValueResult, optimise_value

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocateConfig(LayerChoice, ValueConfig, EditorConfig):
    """Hyperparameters of the locate-then-edit family (documented in editors/README.md).

    ``layers`` empty means: ``layer_count`` consecutive layers ending at layer
    ``round(layer_fraction * depth)`` (the rule for models without family defaults).
    ``mom2_update_weight`` None means: the key width (the MLP's inner size). How much of a
    residual one layer takes on depends on ``kᵀ(λC)⁻¹k``, which grows with the key width;
    the published settings are 0.9-3.1 times the key width of their models.
    """

    solver: Literal["equality", "least_squares", "null_space"] = "equality"
    residual_site: Literal["block", "mlp"] = "block"
    residual_split: Literal["linear", "sqrt"] = "linear"
    consistent_keys: bool = True
    use_covariance: bool = True
    mom2_update_weight: float | None = argument(None, gt=0)
    emmet_lambda: float = argument(0.0, ge=0)
    nullspace_threshold: float = argument(2e-2, gt=0)
    nullspace_relative: bool = False
    nullspace_lambda: float = argument(10.0, ge=0)
    cache_values: bool = False
    stats_source: str = "auto"
    stats_samples: int = argument(1000, ge=1)
    stats_model_samples: int = argument(64, ge=1)
    stats_max_length: int = argument(128, ge=2)
    stats_ridge: float = argument(1e-4, ge=0)
    template_spec: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))


@register_editor("locate")
class LocateEditor(Editor):
    """Configured instance for one stream. It owns everything carried across batches:
    context templates, key statistics and derived matrices, and AlphaEdit's accumulated
    keys of earlier batches."""

    config_class = LocateConfig
    config: LocateConfig
    quick_settings = {
        "v_num_grad_steps": 20,
        "stats_model_samples": 8,
        "stats_max_length": 24,
        "template_spec": [[3, 2]],
    }

    def __init__(self, config: LocateConfig, *, name: str, anatomy: ModelAnatomy, seed: int = 0):
        super().__init__(config, name=name, anatomy=anatomy, seed=seed)
        self._templates: list[str] | None = None
        self._stats_files: dict[int, Path] | None = None
        self._covariances: dict[int, torch.Tensor] = {}
        self._projectors: dict[int, torch.Tensor] = {}
        self._inverses: dict[int, torch.Tensor] = {}
        self._past_gram: dict[int, torch.Tensor] = {}

    @property
    def covariances(self) -> dict[int, torch.Tensor]:
        """Key statistics per layer (empty until :meth:`prepare` ran or when unused)."""
        return dict(self._covariances)

    @property
    def templates(self) -> list[str]:
        """Context templates (``["{}"]`` until :meth:`prepare` ran)."""
        return list(self._templates or ["{}"])

    @property
    def past_gram(self) -> dict[int, torch.Tensor]:
        """Per layer, ``Σ K Kᵀ`` of the keys written by earlier batches (AlphaEdit)."""
        return dict(self._past_gram)

    def reset(self) -> None:
        """Forget state accumulated from applied batches (after the stream was undone)."""
        self._past_gram.clear()

    def _needs_statistics(self) -> bool:
        return self.config.use_covariance or self.config.solver != "equality"

    def prepare(self, model, tokenizer) -> None:
        """Generate context templates and load key statistics (once per stream)."""
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        if self._templates is None:
            spec = [tuple(pair) for pair in self.config.template_spec]
            self._templates = generate_context_templates(model, tokenizer, spec, self.seed)
        if self._stats_files is None and self._needs_statistics():
            spec = StatsSpec(
                source=self.config.stats_source,
                samples=self.config.stats_samples,
                model_samples=self.config.stats_model_samples,
                max_length=self.config.stats_max_length,
                seed=self.seed,
            )
            self._stats_files = second_moment_files(model, tokenizer, self.anatomy, layers, spec)
            for layer, path in self._stats_files.items():
                self._covariances[layer] = torch.load(path, weights_only=True)
                if self.config.solver == "null_space":
                    self._projectors[layer] = self._projector(layer, path)
                elif self.config.solver == "equality" and self.config.use_covariance:
                    self._inverses[layer] = self._inverse(layer, path)

    def _inverse(self, layer: int, stats_file: Path) -> torch.Tensor:
        ridge = self.config.stats_ridge
        return derived(
            stats_file,
            f"inverse-ridge{ridge:g}",
            lambda: torch.linalg.inv(regularised(self._covariances[layer], ridge)),
        )

    def _projector(self, layer: int, stats_file: Path) -> torch.Tensor:
        config = self.config
        mode = "rel" if config.nullspace_relative else "abs"
        projector = derived(
            stats_file,
            f"nullspace-{mode}{config.nullspace_threshold:g}",
            lambda: null_space_projector(
                self._covariances[layer],
                config.nullspace_threshold,
                relative=config.nullspace_relative,
            ).float(),
        )
        rank = int(round(float(torch.trace(projector))))
        logger.info("AlphaEdit layer %d: null space of dimension %d", layer, rank)
        return projector

    def edit(self, model, tokenizer, requests: list[EditRequest], record: EditRecord) -> None:
        """Write ``requests`` into the model (one solve per edited layer)."""
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        values = self.target_values(model, tokenizer, layers[-1], requests)
        record.details["value_nll"] = [round(v.final_nll, 4) for v in values]
        device = next(model.parameters()).device
        shift = torch.stack([v.target - v.initial for v in values], dim=1).double().to(device)
        goal = None
        if len(layers) > 1:
            goal = self._measure(model, tokenizer, requests, layers[-1]) + shift
        for position, layer in enumerate(layers):
            remaining = len(layers) - position
            if position:
                shift = goal - self._measure(model, tokenizer, requests, layers[-1])
            share = remaining
            if self.config.residual_split == "sqrt":
                share = math.sqrt(remaining)
            self._edit_layer(model, tokenizer, requests, layer, shift / share, record)
        if self.config.solver == "null_space":
            self._remember_keys(model, tokenizer, requests, layers, record)

    def target_values(
        self, model, tokenizer, layer: int, requests: list[EditRequest]
    ) -> list[ValueResult]:
        """v* of every request, from the value cache when enabled and present."""
        digest = weights_digest(model) if self.config.cache_values else None
        values = []
        for request in tqdm(requests, desc="target values", unit="edit", disable=len(requests) < 2):
            path = None
            if digest is not None:
                path = value_path(digest, request, layer, self._templates, self.config)
                cached = load_value(path)
                if cached is not None:
                    values.append(cached)
                    continue
            value = optimise_value(
                model, tokenizer, self.anatomy, layer, request, self._templates, self.config
            )
            if path is not None:
                save_value(path, value)
            values.append(value)
        return values

    def _measure(self, model, tokenizer, requests, layer: int) -> torch.Tensor:
        """The activation the residual is defined on: the block output (MEMIT) or the MLP
        output (PMET) at the last edited layer."""
        if self.config.residual_site == "mlp":
            name = self.anatomy.mlp_out_name(layer)
        else:
            name = self.anatomy.layer_name(layer)
        return outputs_at_subject(model, tokenizer, name, requests)

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
        update = self._solve(model, tokenizer, requests, layer, keys, residual)
        record.snapshot(model, f"{name}.weight")
        add_weight_delta(model.get_submodule(name), update, self.anatomy.transposed)
        record.details.setdefault("update_norm", {})[layer] = round(float(update.norm()), 6)

    def _solve(self, model, tokenizer, requests, layer: int, keys, residual) -> torch.Tensor:
        config = self.config
        device = keys.device
        if config.solver == "null_space":
            past = self._past_gram.get(layer)
            return null_space_update(
                residual,
                keys,
                self._projectors[layer].to(device),
                None if past is None else past.to(device),
                lam=config.nullspace_lambda,
            )
        cov = self._covariance(layer, keys.shape[0], device)
        weight = config.mom2_update_weight or float(keys.shape[0])
        if config.solver == "least_squares":
            return least_squares_update(residual, keys, cov, lam=weight)
        constraint = keys
        if not config.consistent_keys:
            constraint = plain_keys(model, tokenizer, self.anatomy, layer, requests)
        inverse = self._inverses.get(layer)
        return equality_update(
            residual,
            constraint,
            cov * weight,
            cov_inverse=None if inverse is None else inverse.to(device) / weight,
            direction_keys=keys,
            lam=config.emmet_lambda if len(requests) > 1 else 0.0,
            case_ids=[r.case_id for r in requests],
        )

    def _remember_keys(self, model, tokenizer, requests, layers: list[int], record) -> None:
        """Add this batch's keys (recomputed on the edited model) to the preserved set; the
        record's undo takes them out again."""
        grams = {}
        for layer in layers:
            keys = request_keys(model, tokenizer, self.anatomy, layer, requests, self._templates)
            grams[layer] = (keys.double() @ keys.double().T).cpu()
        before = {layer: self._past_gram.get(layer) for layer in layers}

        def forget() -> None:
            for layer, gram in before.items():
                if gram is None:
                    self._past_gram.pop(layer, None)
                else:
                    self._past_gram[layer] = gram

        record.on_undo("AlphaEdit: forget this batch's keys", forget)
        for layer, gram in grams.items():
            self._past_gram[layer] = self._past_gram.get(layer, 0) + gram

    def _covariance(self, layer: int, width: int, device) -> torch.Tensor:
        if not self.config.use_covariance and self.config.solver == "equality":
            return torch.eye(width, dtype=torch.float64, device=device)
        return regularised(self._covariances[layer].to(device), self.config.stats_ridge)
