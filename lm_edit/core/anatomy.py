"""Where a causal LM keeps its layers, MLP projections, final norm and LM head.

:func:`resolve_anatomy` answers from, in order of precedence: user overrides (the
``*_module`` / ``weights_transposed`` model_args), a small table keyed by
``model.config.model_type`` (every entry is checked against the live model), and
introspection of the module tree. Anything it cannot work out raises
:class:`UnsupportedArchitectureError` naming the override(s) to pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

logger = logging.getLogger(__name__)


class UnsupportedArchitectureError(ValueError):
    """The model's layout could not be understood; the message names the override to pass."""


@dataclass(frozen=True)
class ModelAnatomy:
    """Dotted module paths describing one model's layout.

    ``layers`` is the path of the ``nn.ModuleList`` of blocks from the model root; the
    others are relative to one block (``mlp_in``, ``mlp_out``, ``attn_out``) or to the root
    (``final_norm``, ``lm_head``). ``final_norm`` is ``""`` when the model applies no final
    norm. ``transposed`` is True when linear weights are stored as (in, out), as in GPT-2's
    ``Conv1D``. For fused gate/up projections (Phi-3) ``mlp_in`` is the fused module, whose
    output width is twice the intermediate size.
    """

    layers: str
    mlp_in: str
    mlp_out: str
    attn_out: str
    final_norm: str
    lm_head: str
    transposed: bool = False

    def num_layers(self, model: nn.Module) -> int:
        """Number of blocks in ``model``."""
        return len(model.get_submodule(self.layers))

    def layer_name(self, layer: int) -> str:
        """Full path of block ``layer``."""
        return f"{self.layers}.{layer}"

    def layer_module(self, model: nn.Module, layer: int) -> nn.Module:
        """Block ``layer`` of ``model``."""
        return model.get_submodule(self.layer_name(layer))

    def mlp_in_name(self, layer: int) -> str:
        """Full path of the MLP input (up) projection of block ``layer``."""
        return f"{self.layers}.{layer}.{self.mlp_in}"

    def mlp_in_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The MLP input (up) projection of block ``layer``."""
        return model.get_submodule(self.mlp_in_name(layer))

    def mlp_out_name(self, layer: int) -> str:
        """Full path of the MLP output (down) projection of block ``layer``."""
        return f"{self.layers}.{layer}.{self.mlp_out}"

    def mlp_out_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The MLP output (down) projection of block ``layer``."""
        return model.get_submodule(self.mlp_out_name(layer))

    def attn_out_name(self, layer: int) -> str:
        """Full path of the attention output projection of block ``layer``."""
        return f"{self.layers}.{layer}.{self.attn_out}"

    def attn_out_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The attention output projection of block ``layer``."""
        return model.get_submodule(self.attn_out_name(layer))

    def final_norm_module(self, model: nn.Module) -> nn.Module:
        """The norm applied before the LM head (``nn.Identity`` when the model has none)."""
        return model.get_submodule(self.final_norm) if self.final_norm else nn.Identity()

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        """The output embedding (hidden -> vocabulary) module."""
        return model.get_submodule(self.lm_head)

    def mlp_output_norm(self, model: nn.Module, layer: int) -> str | None:
        """The name of a norm the block applies to the MLP's output before adding it to
        the residual stream (Gemma 2 and 3's ``post_feedforward_layernorm``), or ``None``
        when the MLP output is added as it is."""
        for name, child in self.layer_module(model, layer).named_children():
            lowered = name.lower()
            after_mlp = any(word in lowered for word in ("feedforward", "ffw", "ffn", "mlp"))
            if _is_norm(child) and lowered.startswith("post") and after_mlp:
                return f"{self.layer_name(layer)}.{name}"
        return None

    def mlp_out_shape(self, model: nn.Module, layer: int = 0) -> tuple[int, int]:
        """(out, in) = (hidden, intermediate) shape of block ``layer``'s MLP output weight."""
        out_dim, in_dim = weight_as_out_in(self.mlp_out_module(model, layer), self.transposed).shape
        return int(out_dim), int(in_dim)

    def hidden_size(self, model: nn.Module) -> int:
        """Width of the residual stream (output width of the MLP output projection)."""
        return self.mlp_out_shape(model)[0]

    def intermediate_size(self, model: nn.Module) -> int:
        """Width of the MLP hidden layer (input width of the MLP output projection)."""
        return self.mlp_out_shape(model)[1]


def is_transposed(module: nn.Module) -> bool:
    """True when ``module`` stores its weight as (in, out) (transformers' ``Conv1D``)."""
    return isinstance(module, Conv1D)


def weight_as_out_in(module: nn.Module, transposed: bool) -> torch.Tensor:
    """The module's weight viewed as (out_features, in_features)."""
    return module.weight.T if transposed else module.weight


def add_weight_delta(module: nn.Module, delta: torch.Tensor, transposed: bool) -> None:
    """Add ``delta``, given as (out, in), to ``module.weight`` in place.

    The delta is cast to the weight's dtype and device; a shape mismatch raises ValueError.
    """
    target = weight_as_out_in(module, transposed)
    if tuple(delta.shape) != tuple(target.shape):
        raise ValueError(
            f"delta has shape {tuple(delta.shape)} but the weight is {tuple(target.shape)} "
            "in (out, in) orientation"
        )
    with torch.no_grad():
        target.add_(delta.to(device=target.device, dtype=target.dtype))


OVERRIDE_KEYS: tuple[str, ...] = (
    "layers_module",
    "mlp_in_module",
    "mlp_out_module",
    "attn_out_module",
    "final_norm_module",
    "lm_head_module",
    "weights_transposed",
)

_FIELD_OF_KEY = {
    "layers_module": "layers",
    "mlp_in_module": "mlp_in",
    "mlp_out_module": "mlp_out",
    "attn_out_module": "attn_out",
    "final_norm_module": "final_norm",
    "lm_head_module": "lm_head",
}

_HINTS = {
    "layers_module": "<path of the nn.ModuleList of blocks from the model root>, e.g. model.layers",
    "mlp_in_module": "<path relative to a block>, e.g. mlp.up_proj",
    "mlp_out_module": "<path relative to a block>, e.g. mlp.down_proj",
    "attn_out_module": "<path relative to a block>, e.g. self_attn.o_proj",
    "final_norm_module": (
        "<path from the model root>, e.g. model.norm (or identity if the model has no final norm)"
    ),
    "lm_head_module": "<path from the model root>, e.g. lm_head",
    "weights_transposed": (
        "true|false (true when projections that are neither nn.Linear nor Conv1D store "
        "their weight as (in, out))"
    ),
}

_NO_FINAL_NORM = {"identity", "none"}


def _layout(
    layers: str, mlp_in: str, mlp_out: str, attn_out: str, final_norm: str, transposed: bool = False
) -> ModelAnatomy:
    return ModelAnatomy(layers, mlp_in, mlp_out, attn_out, final_norm, "lm_head", transposed)


_LLAMA_LIKE = _layout(
    "model.layers", "mlp.up_proj", "mlp.down_proj", "self_attn.o_proj", "model.norm"
)
_FALCON_LIKE = _layout(
    "transformer.h",
    "mlp.dense_h_to_4h",
    "mlp.dense_4h_to_h",
    "self_attention.dense",
    "transformer.ln_f",
)

KNOWN_LAYOUTS: dict[str, ModelAnatomy] = {
    "gpt2": _layout(
        "transformer.h", "mlp.c_fc", "mlp.c_proj", "attn.c_proj", "transformer.ln_f", True
    ),
    "gpt_neo": _layout(
        "transformer.h", "mlp.c_fc", "mlp.c_proj", "attn.attention.out_proj", "transformer.ln_f"
    ),
    "gptj": _layout(
        "transformer.h", "mlp.fc_in", "mlp.fc_out", "attn.out_proj", "transformer.ln_f"
    ),
    "gpt_neox": _layout(
        "gpt_neox.layers",
        "mlp.dense_h_to_4h",
        "mlp.dense_4h_to_h",
        "attention.dense",
        "gpt_neox.final_layer_norm",
    ),
    "opt": _layout(
        "model.decoder.layers", "fc1", "fc2", "self_attn.out_proj", "model.decoder.final_layer_norm"
    ),
    "bloom": _FALCON_LIKE,
    "falcon": _FALCON_LIKE,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi": _layout(
        "model.layers", "mlp.fc1", "mlp.fc2", "self_attn.dense", "model.final_layernorm"
    ),
    "phi3": _layout(
        "model.layers", "mlp.gate_up_proj", "mlp.down_proj", "self_attn.o_proj", "model.norm"
    ),
}
"""Layouts of known ``model_type`` values, verified against transformers 5 module trees."""

_ATTN_WORDS = ("attn", "attention")
_MLP_WORDS = ("mlp", "ffn", "feed_forward", "feedforward", "ff")
_MLP_OUT_NAMES = {"down_proj", "c_proj", "fc_out", "fc2", "dense_4h_to_h", "w2", "wo", "out_proj"}
_MLP_IN_NAMES = {"up_proj", "c_fc", "fc_in", "fc1", "dense_h_to_4h", "wi", "w1", "gate_up_proj"}
_ATTN_OUT_NAMES = {"o_proj", "out_proj", "c_proj", "dense", "wo", "o", "out", "proj", "output"}
_QKV_NAMES = {"q", "k", "v", "wq", "wk", "wv", "c_attn", "query", "key", "value", "wqkv"}
_FINAL_NORM_NAMES = {"norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm", "norm_f"}
_LM_HEAD_NAMES = ("lm_head", "embed_out", "output", "head")


def resolve_anatomy(
    model: nn.Module, overrides: Mapping[str, str | bool | None] | None = None
) -> ModelAnatomy:
    """Return the anatomy of ``model``: overrides, else the checked table, else introspection.

    ``overrides`` takes the keys in :data:`OVERRIDE_KEYS` (None values are ignored); unknown
    keys raise ValueError, paths that do not resolve raise UnsupportedArchitectureError.
    """
    return _Resolver(model, _clean_overrides(overrides), use_table=True).resolve()


def introspect_anatomy(
    model: nn.Module, overrides: Mapping[str, str | bool | None] | None = None
) -> ModelAnatomy:
    """Like :func:`resolve_anatomy` but ignoring the table (introspection and overrides only)."""
    return _Resolver(model, _clean_overrides(overrides), use_table=False).resolve()


def split_anatomy_overrides(
    kwargs: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split model_args into (anatomy overrides, everything else)."""
    anatomy = {k: v for k, v in kwargs.items() if k in OVERRIDE_KEYS}
    rest = {k: v for k, v in kwargs.items() if k not in OVERRIDE_KEYS}
    return anatomy, rest


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    raise ValueError(f"weights_transposed must be true or false, got {value!r}")


def _clean_overrides(overrides: Mapping[str, object] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"anatomy overrides must be a mapping, got {type(overrides).__name__}")
    unknown = sorted(str(k) for k in overrides if k not in OVERRIDE_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown anatomy override(s): {', '.join(unknown)}. "
            f"Valid keys are: {', '.join(OVERRIDE_KEYS)}."
        )
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "weights_transposed":
            clean[key] = _parse_bool(value)
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key} must be a dotted module path, got {value!r}; {_HINTS[key]}")
        else:
            clean[key] = value.strip()
    return clean


_MISSING = object()


def _lookup(root: nn.Module, path: str) -> Any:
    """The module at ``path``, None if the attribute exists but is None, else ``_MISSING``."""
    obj: Any = root
    for part in path.split("."):
        if not isinstance(obj, nn.Module):
            return _MISSING
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj if obj is None or isinstance(obj, nn.Module) else _MISSING


def _weight_2d(module: nn.Module) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None


def _is_projection(module: nn.Module) -> bool:
    if isinstance(module, (nn.Linear, Conv1D)):
        return True
    return not isinstance(module, nn.Embedding) and _weight_2d(module) is not None


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _has_word(path: str, words: tuple[str, ...]) -> bool:
    return any(word in part.lower() for part in path.split(".") for word in words)


def _is_qkv(path: str) -> bool:
    leaf = _leaf(path).lower()
    return (
        leaf in _QKV_NAMES
        or leaf.startswith(("q_", "k_", "v_", "qkv", "query", "key", "value"))
        or "qkv" in leaf
    )


def _narrow(candidates: list[str], *tests: Callable[[str], bool]) -> list[str]:
    """Apply each test in turn, keeping its survivors only when some survive."""
    for test in tests:
        if len(candidates) <= 1:
            break
        kept = [c for c in candidates if test(c)]
        candidates = kept or candidates
    return candidates


def _config_int(config: object, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class _Resolver:
    """One resolution of one model; collects the problems it cannot solve."""

    def __init__(self, model: nn.Module, overrides: dict[str, Any], use_table: bool) -> None:
        self.model = model
        self.overrides = overrides
        config = getattr(model, "config", None)
        self.model_type = str(getattr(config, "model_type", "") or "") or type(model).__name__
        self.entry = KNOWN_LAYOUTS.get(self.model_type) if use_table else None
        text = config
        get_text = getattr(config, "get_text_config", None)
        if callable(get_text):
            try:
                text = get_text()
            except Exception:  # odd configs: keep the top-level one
                text = config
        self.n_layers = _config_int(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
        self.hidden = _config_int(text, "hidden_size", "n_embd", "d_model", "dim")
        self.intermediate = _config_int(
            text, "intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "d_ff"
        )
        self.problems: list[str] = []
        self.block: nn.Module | None = None
        self.layers_path = ""

    # -- helpers ------------------------------------------------------------------------

    def _transposed(self, module: nn.Module) -> bool:
        """Orientation of ``module``: known for Linear/Conv1D, else the override (or False)."""
        if isinstance(module, (nn.Linear, Conv1D)):
            return is_transposed(module)
        return bool(self.overrides.get("weights_transposed", False))

    def _check_forced_orientation(self, mlp_out: nn.Module) -> None:
        forced = self.overrides.get("weights_transposed")
        if forced is None or forced == self._transposed(mlp_out):
            return
        stored = "(in, out)" if is_transposed(mlp_out) else "(out, in)"
        raise UnsupportedArchitectureError(
            f"weights_transposed={forced} contradicts the MLP output projection of model type "
            f"'{self.model_type}': it is a {type(mlp_out).__name__}, which stores its weight as "
            f"{stored}. Drop weights_transposed; it is only for projection modules that are "
            "neither nn.Linear nor Conv1D."
        )

    def _shape(self, module: nn.Module) -> tuple[int, int]:
        out_dim, in_dim = weight_as_out_in(module, self._transposed(module)).shape
        return int(out_dim), int(in_dim)

    def _projections(self) -> dict[str, tuple[int, int]]:
        assert self.block is not None
        return {
            name: self._shape(m)
            for name, m in self.block.named_modules()
            if name and _is_projection(m)
        }

    def _describe_block(self) -> str:
        listing = ", ".join(f"{n} ({i}->{o})" for n, (o, i) in self._projections().items())
        return f"projections in block 0 ({self.layers_path}.0): {listing or 'none'}"

    def _fail(self, key: str, reason: str) -> None:
        self.problems.append(f"  - {reason}; pass {key}={_HINTS[key]}")

    def _bad_override(self, key: str, reason: str) -> UnsupportedArchitectureError:
        extra = f" ({self._describe_block()})" if self.block is not None else ""
        return UnsupportedArchitectureError(
            f"{key}={self.overrides[key]!r} {reason} in model type '{self.model_type}' "
            f"({type(self.model).__name__}){extra}. Expected {_HINTS[key]}."
        )

    def _field(
        self,
        key: str,
        check: Callable[[str, bool], str | None],
        find: Callable[[], tuple[str | None, str]],
    ) -> str | None:
        """Override, else table entry, else introspection; each candidate is checked."""
        if key in self.overrides:
            path = self.overrides[key]
            reason = check(path, True)
            if reason:
                raise self._bad_override(key, reason)
            return path
        if self.entry is not None:
            path = getattr(self.entry, _FIELD_OF_KEY[key])
            reason = check(path, False)
            if not reason:
                return path
            logger.info(
                "table path %s=%r for '%s' %s; introspecting", key, path, self.model_type, reason
            )
        found, reason = find()
        if found is not None:
            return found
        self._fail(key, reason)
        return None

    # -- layers ---------------------------------------------------------------------------

    def _check_layers(self, path: str, override: bool) -> str | None:
        module = _lookup(self.model, path)
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) == 0:
            return "does not resolve to a non-empty nn.ModuleList"
        if self.n_layers and len(module) != self.n_layers:
            if not override:
                return f"has {len(module)} blocks but the config says {self.n_layers}"
            logger.warning(
                "%s has %d blocks but the config says %d", path, len(module), self.n_layers
            )
        return None

    def _find_layers(self) -> tuple[str | None, str]:
        lists = {
            name: m
            for name, m in self.model.named_modules()
            if isinstance(m, nn.ModuleList) and len(m) > 0
        }
        if self.n_layers:
            lists = {n: m for n, m in lists.items() if len(m) == self.n_layers}
        else:
            lists = {n: m for n, m in lists.items() if len({type(b) for b in m}) == 1}
        want = f"an nn.ModuleList of {self.n_layers or 'identical'} blocks"
        if not lists:
            return None, f"found no {want}"

        def has_projection(name: str) -> bool:
            return any(_is_projection(m) for m in lists[name][0].modules())

        def writes_hidden(name: str) -> bool:
            return any(
                _is_projection(m) and self._shape(m)[0] == self.hidden
                for m in lists[name][0].modules()
            )

        def depth(name: str) -> int:
            return name.count(".") if name else -1

        shallowest = min(depth(n) for n in lists)
        found = _narrow(
            list(lists), has_projection, writes_hidden, lambda n: depth(n) == shallowest
        )
        if len(found) > 1:
            return None, f"several candidates for {want}: {', '.join(found)}"
        return found[0], ""

    # -- block-relative projections --------------------------------------------------------

    def _relative(self, key: str) -> None:
        """Strip a full ``<layers>.<i>.`` prefix from a block-relative override."""
        path = self.overrides.get(key)
        prefix = f"{self.layers_path}."
        if path and path.startswith(prefix):
            index, _, rest = path[len(prefix) :].partition(".")
            if index.isdigit() and rest:
                logger.info("%s=%r taken relative to a block: %r", key, path, rest)
                self.overrides[key] = rest

    def _check_projection(self, role: str) -> Callable[[str, bool], str | None]:
        def check(path: str, _override: bool) -> str | None:
            assert self.block is not None
            module = _lookup(self.block, path)
            if not isinstance(module, nn.Module):
                return "does not resolve to a module in block 0"
            if _weight_2d(module) is None:
                return f"resolves to {type(module).__name__}, which has no 2-D weight"
            out_dim, in_dim = self._shape(module)
            if self.hidden and role in ("mlp_out", "attn_out") and out_dim != self.hidden:
                return f"maps {in_dim}->{out_dim}, not to the hidden size {self.hidden}"
            if self.hidden and role == "mlp_in" and in_dim != self.hidden:
                return f"maps {in_dim}->{out_dim}, not from the hidden size {self.hidden}"
            return None

        return check

    def _find_mlp_out(self) -> tuple[str | None, str]:
        shapes = self._projections()
        hidden = self.hidden
        cands = [
            n
            for n, (o, _) in shapes.items()
            if (hidden is None or o == hidden) and not _has_word(n, _ATTN_WORDS)
        ]
        found = _narrow(
            cands,
            lambda n: shapes[n][1] == self.intermediate,
            lambda n: shapes[n][1] != shapes[n][0],
            lambda n: _has_word(n, _MLP_WORDS),
            lambda n: _leaf(n) in _MLP_OUT_NAMES,
        )
        if len(found) == 1:
            return found[0], ""
        what = "MLP output projection (intermediate -> hidden)"
        if not found:
            return None, f"no {what} found; {self._describe_block()}"
        return None, f"cannot tell the {what} among {', '.join(found)}"

    def _find_mlp_in(self, mlp_out: str | None) -> tuple[str | None, str]:
        shapes = self._projections()
        inter = shapes[mlp_out][1] if mlp_out else self.intermediate
        cands = [
            n
            for n, (o, i) in shapes.items()
            if n != mlp_out
            and (self.hidden is None or i == self.hidden)
            and (inter is None or o in (inter, 2 * inter))
            and not _has_word(n, _ATTN_WORDS)
        ]
        found = _narrow(
            cands,
            lambda n: mlp_out is not None and _parent(n) == _parent(mlp_out),
            lambda n: shapes[n][0] == inter,
            lambda n: "gate" not in _leaf(n).lower(),
            lambda n: "up" in _leaf(n).lower() or _leaf(n) in _MLP_IN_NAMES,
        )
        if len(found) == 1:
            return found[0], ""
        what = "MLP input projection (hidden -> intermediate)"
        if not found:
            return None, f"no {what} found; {self._describe_block()}"
        return None, f"cannot tell the {what} among {', '.join(found)}"

    def _find_attn_out(self, mlp_out: str | None) -> tuple[str | None, str]:
        shapes = self._projections()
        cands = [
            n
            for n, (o, _) in shapes.items()
            if n != mlp_out and (self.hidden is None or o == self.hidden)
        ]
        cands = [n for n in cands if _has_word(n, _ATTN_WORDS) and not _is_qkv(n)]
        found = _narrow(cands, lambda n: _leaf(n) in _ATTN_OUT_NAMES)
        if len(found) == 1:
            return found[0], ""
        what = "attention output projection (-> hidden)"
        if not found:
            return None, f"no {what} found; {self._describe_block()}"
        return None, f"cannot tell the {what} among {', '.join(found)}"

    # -- root-level modules ----------------------------------------------------------------

    def _check_final_norm(self, path: str, override: bool) -> str | None:
        if path == "":
            return None
        module = _lookup(self.model, path)
        if module is None and not override:
            return None
        if not isinstance(module, nn.Module):
            return "does not resolve to a module"
        return None

    def _find_final_norm(self) -> tuple[str | None, str]:
        home = _parent(self.layers_path) if self.layers_path else None
        for parent_path in dict.fromkeys([home, ""]):
            if parent_path is None:
                continue
            parent = self.model.get_submodule(parent_path)
            names = list(parent._modules)
            prefix = f"{parent_path}." if parent_path else ""
            after = names.index(_leaf(self.layers_path)) if parent_path == home else -1
            norms = [
                n
                for n, m in parent.named_children()
                if _is_norm(m)
                and (
                    self.hidden is None
                    or getattr(m, "weight", None) is None
                    or m.weight.shape[-1] == self.hidden
                )
            ]
            found = _narrow(
                norms,
                lambda n: n in _FINAL_NORM_NAMES,
                lambda n, after=after, names=names: names.index(n) > after,
                lambda n: "emb" not in n.lower(),
            )
            if len(found) == 1:
                return prefix + found[0], ""
            if found:
                return (
                    None,
                    f"cannot tell the final norm among {', '.join(prefix + n for n in found)}",
                )
        return None, "no final norm found next to the blocks"

    def _check_lm_head(self, path: str, _override: bool) -> str | None:
        module = _lookup(self.model, path)
        if not isinstance(module, nn.Module):
            return "does not resolve to a module"
        if _weight_2d(module) is None:
            return f"resolves to {type(module).__name__}, which has no 2-D weight"
        return None

    def _find_lm_head(self) -> tuple[str | None, str]:
        get_out = getattr(self.model, "get_output_embeddings", None)
        head = get_out() if callable(get_out) else None
        if isinstance(head, nn.Module):
            for name, module in self.model.named_modules():
                if module is head and name:
                    return name, ""
        for name in _LM_HEAD_NAMES:
            module = _lookup(self.model, name)
            if isinstance(module, nn.Module) and _weight_2d(module) is not None:
                return name, ""
        return None, "get_output_embeddings() gave no module and no lm_head was found"

    # -- driver -----------------------------------------------------------------------------

    def resolve(self) -> ModelAnatomy:
        layers = self._field("layers_module", self._check_layers, self._find_layers)
        mlp_in = mlp_out = attn_out = None
        if layers is not None:
            self.layers_path = layers
            self.block = self.model.get_submodule(layers)[0]
            for key in ("mlp_in_module", "mlp_out_module", "attn_out_module"):
                self._relative(key)
            mlp_out = self._field(
                "mlp_out_module", self._check_projection("mlp_out"), self._find_mlp_out
            )
            mlp_in = self._field(
                "mlp_in_module",
                self._check_projection("mlp_in"),
                lambda: self._find_mlp_in(mlp_out),
            )
            attn_out = self._field(
                "attn_out_module",
                self._check_projection("attn_out"),
                lambda: self._find_attn_out(mlp_out),
            )
        if str(self.overrides.get("final_norm_module", "")).lower() in _NO_FINAL_NORM:
            self.overrides["final_norm_module"] = ""
        final_norm = self._field("final_norm_module", self._check_final_norm, self._find_final_norm)
        lm_head = self._field("lm_head_module", self._check_lm_head, self._find_lm_head)
        if self.problems or layers is None:
            raise UnsupportedArchitectureError(self._message(layers is None))
        assert mlp_in and mlp_out and attn_out and final_norm is not None and lm_head
        self._check_forced_orientation(self.block.get_submodule(mlp_out))
        if final_norm and _lookup(self.model, final_norm) is None:
            final_norm = ""
        anatomy = ModelAnatomy(
            layers=layers,
            mlp_in=mlp_in,
            mlp_out=mlp_out,
            attn_out=attn_out,
            final_norm=final_norm,
            lm_head=lm_head,
            transposed=self._transposed(self.block.get_submodule(mlp_out)),
        )
        self._check_all_blocks(anatomy)
        if self.entry is not None and anatomy != replace(self.entry, transposed=anatomy.transposed):
            logger.info("anatomy of '%s' differs from the table: %s", self.model_type, anatomy)
        return anatomy

    def _check_all_blocks(self, anatomy: ModelAnatomy) -> None:
        blocks = self.model.get_submodule(anatomy.layers)
        for field in ("mlp_in", "mlp_out", "attn_out"):
            path = getattr(anatomy, field)
            lacking = [
                i for i, b in enumerate(blocks) if not isinstance(_lookup(b, path), nn.Module)
            ]
            if lacking:
                logger.warning("%s=%r is missing from blocks %s", field, path, lacking)

    def _message(self, no_layers: bool) -> str:
        head = (
            f"Cannot work out the layout of model type '{self.model_type}' "
            f"({type(self.model).__name__}):"
        )
        lines = [head, *self.problems]
        if no_layers:
            lines.append(
                "  (the block-relative paths mlp_in_module, mlp_out_module and attn_out_module "
                "may also be needed once the blocks are found)"
            )
        lines.append(
            "Pass the named override(s) as model_args (e.g. --model_args "
            "pretrained=...,mlp_out_module=mlp.down_proj) or in the overrides dict."
        )
        return "\n".join(lines)
