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

from lm_edit.core.anatomy import ModelAnatomy, UnsupportedArchitectureError, add_weight_delta
from lm_edit.core.arguments import argument
from lm_edit.core.fingerprint import weights_digest
from lm_edit.core.record import EditRecord
from lm_edit.core.stats import KeyStatistics, StatsSpec, derived, key_statistics
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
from lm_edit.editors.locate.value_cache import load_value, save_value, value_path
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
    residual_from: Literal["prompt", "keys"] = "prompt"
    use_covariance: bool = True
    mom2_update_weight: float | None = argument(None, gt=0)
    emmet_lambda: float = argument(0.0, ge=0)
    nullspace_threshold: float = argument(2e-2, gt=0)
    nullspace_relative: bool = False
    nullspace_lambda: float = argument(10.0, ge=0)
    cache_values: bool = False
    stats_source: str = argument("auto", file=True)
    stats_samples: int = argument(1000, ge=1)
    stats_model_samples: int = argument(64, ge=1)
    stats_max_length: int = argument(128, ge=2)
    stats_ridge: float = argument(1e-4, ge=0)
    template_spec: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
    context_templates: tuple[tuple[str, ...], ...] = ()
    key_average: Literal["flat", "per_group"] = "flat"

    def __post_init__(self) -> None:
        super().__post_init__()
        for group in self.context_templates:
            bad = [t for t in group if t.count("{}") != 1]
            if not group or bad:
                raise ValueError(
                    f"LocateConfig: context_templates={self.context_templates!r}: give "
                    'non-empty groups of templates with one "{}" each, e.g. '
                    '[["{}"], ["The news. {}", "I think. {}"]].'
                )
        for pair in self.template_spec:
            if len(pair) != 2 or min(pair) < 1:
                raise ValueError(
                    f"LocateConfig: template_spec={self.template_spec!r}: each entry must be "
                    "[length, count] with both >= 1, e.g. [[5,10],[10,10]]."
                )
        named = ("auto", "wikitext", "model")
        if self.stats_source not in named and not Path(self.stats_source).is_file():
            raise ValueError(
                f"LocateConfig: stats_source={self.stats_source!r} is neither "
                f"{', '.join(map(repr, named))} nor an existing text file."
            )


@register_editor("locate")
class LocateEditor(Editor):
    """Configured instance for one stream. It owns everything carried across batches:
    context templates, key statistics and derived matrices, and AlphaEdit's accumulated
    keys of earlier batches."""

    config_class = LocateConfig
    config: LocateConfig
    quick_settings = {
        "v_num_grad_steps": 40,
        "v_lr": 1.0,
        # PMET's paper weight (1.0), read at the subject's last token as the reference
        # does, holds a tiny random model too tightly for 40 steps
        "kl_factor": 0.0625,
        # PMET's rule once the target leads (argmax_nll_factor) ends v* at the first pass
        # where it does, too weak for the spread over layers of a tiny random model
        # (tests/test_value_terms.py checks the rule itself)
        "argmax_nll_factor": None,
        "clamp_norm_factor": 100.0,
        "nullspace_threshold": 0.5,  # AlphaEdit: few statistics leave few small eigenvalues
        "nullspace_relative": True,
        "stats_model_samples": 8,
        "stats_max_length": 24,
        "template_spec": [[3, 2]],
    }

    def __init__(self, config: LocateConfig, *, name: str, anatomy: ModelAnatomy, seed: int = 0):
        super().__init__(config, name=name, anatomy=anatomy, seed=seed)
        self._templates: list[str] | None = None
        self._group_sizes: list[int] = []
        self._statistics: dict[int, KeyStatistics] | None = None
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
        self._check_residual_writes(model, layers)
        self._check_residual_from(layers)
        if self._templates is None:
            self._templates, self._group_sizes = self._context_templates(model, tokenizer)
        if self._statistics is None and self._needs_statistics():
            spec = StatsSpec(
                source=self.config.stats_source,
                samples=self.config.stats_samples,
                model_samples=self.config.stats_model_samples,
                max_length=self.config.stats_max_length,
                seed=self.seed,
            )
            self._statistics = key_statistics(model, tokenizer, self.anatomy, layers, spec)
            for layer, stats in self._statistics.items():
                self._covariances[layer] = stats.matrix
                if self.config.solver == "null_space":
                    self._projectors[layer] = self._projector(layer, stats)
                elif self.config.solver == "equality" and self.config.use_covariance:
                    self._inverses[layer] = self._inverse(stats)

    def _context_templates(self, model, tokenizer) -> tuple[list[str], list[int]]:
        """The context templates (explicit or generated) and the size of each group: the
        bare ``"{}"``, then one group per ``template_spec`` entry (or as given)."""
        if self.config.context_templates:
            groups = [list(group) for group in self.config.context_templates]
            return [t for group in groups for t in group], [len(g) for g in groups]
        spec = [tuple(pair) for pair in self.config.template_spec]
        templates = generate_context_templates(model, tokenizer, spec, self.seed)
        return templates, [1] + [count for _, count in spec]

    def _keys(self, model, tokenizer, layer: int, requests: list[EditRequest]) -> torch.Tensor:
        """Template-averaged keys of ``requests`` (flat or per group, ``key_average``)."""
        groups = self._group_sizes if self.config.key_average == "per_group" else None
        return request_keys(model, tokenizer, self.anatomy, layer, requests, self.templates, groups)

    def _check_residual_writes(self, model, layers: list[int]) -> None:
        """Refuse residual-stream targets on blocks that normalise the MLP's output: a
        change of the MLP output then does not move the residual one for one."""
        if self.config.value_site != "block" and len(layers) == 1:
            return  # v* at the MLP output itself (ROME): the norm comes after it
        normed = [norm for layer in layers if (norm := self.anatomy.mlp_output_norm(model, layer))]
        if normed:
            raise UnsupportedArchitectureError(
                f"{self.name}: this model normalises each MLP's output before the residual "
                f"add ({normed[0]}), so a residual-stream target cannot be written as a "
                "change of the MLP's output projection. Edit one layer with the value at "
                "the MLP output instead: editor=rome, or this editor with value_site=mlp "
                "and one layer (e.g. layers=<n>)."
            )

    def _check_residual_from(self, layers: list[int]) -> None:
        """``residual_from: keys`` (r-ROME) is defined for the equality solve on one layer
        whose MLP output carries v*, with the averaged key as the constraint."""
        config = self.config
        if config.residual_from != "keys":
            return
        if (
            len(layers) != 1
            or config.value_site != "mlp"
            or config.solver != "equality"
            or not config.consistent_keys
        ):
            raise ValueError(
                f"{self.name}: residual_from=keys (r-ROME's v* − W k*) needs one edited "
                "layer, value_site=mlp, solver=equality and consistent_keys=true; got "
                f"layers={layers}, value_site={config.value_site}, solver={config.solver}, "
                f"consistent_keys={config.consistent_keys}. Use residual_from=prompt for the "
                "other settings."
            )

    def _inverse(self, stats: KeyStatistics) -> torch.Tensor:
        ridge = self.config.stats_ridge
        return derived(
            stats,
            f"inverse-ridge{ridge:g}",
            lambda cov: torch.linalg.inv(regularised(cov, ridge)),
            torch.float64,
        )

    def _projector(self, layer: int, stats: KeyStatistics) -> torch.Tensor:
        config = self.config
        mode = "rel" if config.nullspace_relative else "abs"
        projector = derived(
            stats,
            f"nullspace-{mode}{config.nullspace_threshold:g}",
            lambda cov: null_space_projector(
                cov, config.nullspace_threshold, relative=config.nullspace_relative
            ).float(),
            torch.float32,
        )
        rank = int(round(float(torch.trace(projector))))
        logger.info("AlphaEdit layer %d: null space of dimension %d", layer, rank)
        return projector

    def tokens_needed(self, tokenizer, request: EditRequest) -> int:
        """The prompt and target behind the longest context template (a seed word, up to
        ``length`` sampled tokens and ". ")."""
        base = super().tokens_needed(tokenizer, request)
        if self.config.context_templates:
            prefixes = [t.replace("{}", "") for g in self.config.context_templates for t in g]
            return base + max(len(tokenizer(p)["input_ids"]) for p in prefixes)
        longest = max((length for length, _ in self.config.template_spec), default=0)
        return base + (longest + 3 if longest else 0)

    def check_requests(self, model, tokenizer, requests: list[EditRequest]) -> None:
        """Also refuse two requests of one batch that give the same key different targets
        (the same subject after the same words): one solve cannot write both."""
        super().check_requests(model, tokenizer, requests)
        seen: dict[str, EditRequest] = {}
        for request in requests:
            end = request.prompt.rfind(request.subject)
            key = request.prompt[: end + len(request.subject)] if end >= 0 else request.prompt
            other = seen.setdefault(key, request)
            if other is not request and other.target_new != request.target_new:
                raise ValueError(
                    f"{self.name}: requests {other.case_id!r} and {request.case_id!r} of one "
                    f"batch ask {key!r} for different targets ({other.target_new!r} and "
                    f"{request.target_new!r}); one solve cannot write both. Drop one, or put "
                    "them in different batches (edit_batch_size=1)."
                )

    def edit(self, model, tokenizer, requests: list[EditRequest], record: EditRecord) -> None:
        """Write ``requests`` into the model (one solve per edited layer)."""
        layers = resolve_layers(self.config, self.anatomy.num_layers(model))
        values = self.target_values(model, tokenizer, layers[-1], requests)
        record.details["value_nll"] = [round(v.final_nll, 4) for v in values]
        shift = torch.stack([v.target - v.initial for v in values], dim=1).double()
        keys = None  # the first layer's, when already computed
        if self.config.residual_from == "keys":
            keys = self._keys(model, tokenizer, layers[0], requests)
            shift = self._residual_at_keys(model, keys, layers[0], values)
        goal = None
        if len(layers) > 1:
            measured = self._measure(model, tokenizer, requests, layers[-1])
            goal = measured + shift.to(measured.device)
        for position, layer in enumerate(layers):
            remaining = len(layers) - position
            if position:
                shift = goal - self._measure(model, tokenizer, requests, layers[-1])
            share = remaining
            if self.config.residual_split == "sqrt":
                share = math.sqrt(remaining)
            self._edit_layer(
                model,
                tokenizer,
                requests,
                layer,
                shift / share,
                record,
                keys if not position else None,
            )
        if self.config.solver == "null_space":
            self._remember_keys(model, tokenizer, requests, layers, record)

    def _residual_at_keys(
        self, model, keys: torch.Tensor, layer: int, values: list[ValueResult]
    ) -> torch.Tensor:
        """``v* − W k* − b`` per request (r-ROME): what the edited MLP output projection must
        add for the template-averaged keys ``keys``, rather than the shift of v* from the
        bare prompt's output."""
        projection = model.get_submodule(self.anatomy.mlp_out_name(layer))
        weight = next(projection.parameters())
        with torch.no_grad():
            produced = projection(keys.T.to(weight.device, weight.dtype)).double().T
        targets = torch.stack([v.target for v in values], dim=1).double()
        return targets.to(produced.device) - produced

    def target_values(
        self, model, tokenizer, layer: int, requests: list[EditRequest]
    ) -> list[ValueResult]:
        """v* of every request, from the value cache when enabled and present."""
        digest = weights_digest(model) if self.config.cache_values else None
        width = self.anatomy.hidden_size(model)
        values = []
        for request in tqdm(requests, desc="target values", unit="edit", disable=len(requests) < 2):
            path = None
            if digest is not None:
                path = value_path(digest, request, layer, self._templates, self.config)
                cached = load_value(path, width)
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
        keys: torch.Tensor | None = None,
    ) -> None:
        """Solve for this layer's update that adds ``residual`` on the requests' keys
        (``keys``, when the caller computed them on the model as it is)."""
        name = self.anatomy.mlp_out_name(layer)
        if keys is None:
            keys = self._keys(model, tokenizer, layer, requests)
        update = self._solve(model, tokenizer, requests, layer, keys, residual)
        record.snapshot(model, f"{name}.weight")
        add_weight_delta(model.get_submodule(name), update, self.anatomy.transposed)
        record.details.setdefault("update_norm", {})[layer] = round(float(update.norm()), 6)

    def _solve(self, model, tokenizer, requests, layer: int, keys, residual) -> torch.Tensor:
        config = self.config
        device = keys.device  # the device holding this layer: the solve runs there
        residual = residual.to(device)
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
            constraint.to(device),
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
            keys = self._keys(model, tokenizer, layer, requests)
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
