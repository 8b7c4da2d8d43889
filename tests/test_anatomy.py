"""Tests for lm_edit.core.anatomy on tiny randomly initialised models of each supported family."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from lm_edit.core.anatomy import (
    KNOWN_LAYOUTS,
    OVERRIDE_KEYS,
    ModelAnatomy,
    UnsupportedArchitectureError,
    add_weight_delta,
    introspect_anatomy,
    is_transposed,
    resolve_anatomy,
    split_anatomy_overrides,
    weight_as_out_in,
)

HIDDEN = 32
INTER = 48
LAYERS = 3
VOCAB = 100
TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
SMALL = {
    "num_hidden_layers": LAYERS,
    "hidden_size": HIDDEN,
    "num_attention_heads": 2,
    "vocab_size": VOCAB,
    **TOKENS,
}
LLAMA_LIKE = {**SMALL, "num_key_value_heads": 2, "intermediate_size": INTER, "head_dim": 16}

# family -> (config factory, intermediate size, mlp_in output width)
FAMILIES: dict[str, tuple[Callable[[], PretrainedConfig], int, int]] = {
    "gpt2": (
        lambda: transformers.GPT2Config(
            n_layer=LAYERS, n_embd=HIDDEN, n_head=2, n_inner=INTER, vocab_size=VOCAB, **TOKENS
        ),
        INTER,
        INTER,
    ),
    "gptj": (
        lambda: transformers.GPTJConfig(
            n_layer=LAYERS,
            n_embd=HIDDEN,
            n_head=2,
            n_inner=INTER,
            rotary_dim=8,
            vocab_size=VOCAB,
            **TOKENS,
        ),
        INTER,
        INTER,
    ),
    "gpt_neox": (
        lambda: transformers.GPTNeoXConfig(**SMALL, intermediate_size=INTER),
        INTER,
        INTER,
    ),
    "opt": (
        lambda: transformers.OPTConfig(**SMALL, ffn_dim=INTER, word_embed_proj_dim=HIDDEN),
        INTER,
        INTER,
    ),
    "llama": (lambda: transformers.LlamaConfig(**LLAMA_LIKE), INTER, INTER),
    "mistral": (lambda: transformers.MistralConfig(**LLAMA_LIKE), INTER, INTER),
    "qwen2": (lambda: transformers.Qwen2Config(**LLAMA_LIKE), INTER, INTER),
    "gemma": (lambda: transformers.GemmaConfig(**LLAMA_LIKE), INTER, INTER),
    "gemma2": (lambda: transformers.Gemma2Config(**LLAMA_LIKE), INTER, INTER),
    "gemma3_text": (lambda: transformers.Gemma3TextConfig(**LLAMA_LIKE), INTER, INTER),
    "qwen3": (lambda: transformers.Qwen3Config(**LLAMA_LIKE), INTER, INTER),
    "phi3": (lambda: transformers.Phi3Config(**LLAMA_LIKE), INTER, 2 * INTER),
    "phi": (lambda: transformers.PhiConfig(**SMALL, intermediate_size=INTER), INTER, INTER),
    "gpt_neo": (
        lambda: transformers.GPTNeoConfig(
            num_layers=LAYERS,
            hidden_size=HIDDEN,
            num_heads=2,
            intermediate_size=INTER,
            attention_types=[[["global", "local"], 1], [["global"], 1]],
            vocab_size=VOCAB,
            **TOKENS,
        ),
        INTER,
        INTER,
    ),
    "falcon": (
        lambda: transformers.FalconConfig(**SMALL, ffn_hidden_size=INTER),
        INTER,
        INTER,
    ),
    "bloom": (
        lambda: transformers.BloomConfig(
            n_layer=LAYERS, hidden_size=HIDDEN, n_head=2, vocab_size=VOCAB, **TOKENS
        ),
        4 * HIDDEN,
        4 * HIDDEN,
    ),
}
REQUIRED = ["gpt2", "gptj", "gpt_neox", "opt", "llama", "mistral", "qwen2", "gemma"]


def build(family: str) -> nn.Module:
    """A fresh tiny random model of ``family`` in eval mode (for tests that modify it)."""
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(FAMILIES[family][0]()).eval()


@cache
def shared(family: str) -> nn.Module:
    """One tiny model per family, shared by the tests that only read it."""
    return build(family)


def test_every_table_entry_is_tested() -> None:
    assert set(KNOWN_LAYOUTS) == set(FAMILIES)
    assert set(REQUIRED) <= set(FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resolve_matches_table_and_shapes(family: str) -> None:
    model = shared(family)
    _, inter, mlp_in_width = FAMILIES[family]
    assert model.config.model_type == family
    anatomy = resolve_anatomy(model)
    assert anatomy == KNOWN_LAYOUTS[family]
    assert anatomy.num_layers(model) == LAYERS
    assert anatomy.transposed is (family == "gpt2")
    for layer in range(LAYERS):
        out_in = weight_as_out_in(anatomy.mlp_out_module(model, layer), anatomy.transposed)
        assert tuple(out_in.shape) == (HIDDEN, inter)
        mlp_in = weight_as_out_in(anatomy.mlp_in_module(model, layer), anatomy.transposed)
        assert tuple(mlp_in.shape) == (mlp_in_width, HIDDEN)
        attn_out = weight_as_out_in(anatomy.attn_out_module(model, layer), anatomy.transposed)
        assert attn_out.shape[0] == HIDDEN
    assert anatomy.mlp_out_shape(model) == (HIDDEN, inter)
    assert anatomy.hidden_size(model) == HIDDEN
    assert anatomy.intermediate_size(model) == inter
    assert anatomy.layer_module(model, 1) is model.get_submodule(anatomy.layers)[1]
    norm = anatomy.final_norm_module(model)
    assert anatomy.final_norm and not isinstance(norm, nn.Identity)
    assert norm.weight.shape == (HIDDEN,)
    head = anatomy.lm_head_module(model)
    assert head is model.get_output_embeddings()
    assert tuple(head.weight.shape) == (VOCAB, HIDDEN)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_table_paths_exist_verbatim(family: str) -> None:
    model = shared(family)
    entry = KNOWN_LAYOUTS[family]
    block = model.get_submodule(entry.layers)[0]
    for path in (entry.mlp_in, entry.mlp_out, entry.attn_out):
        assert block.get_submodule(path) is not None
    for path in (entry.final_norm, entry.lm_head):
        assert model.get_submodule(path) is not None


@pytest.mark.parametrize("family", list(FAMILIES))
def test_introspection_agrees_with_table(family: str) -> None:
    model = shared(family)
    assert introspect_anatomy(model) == KNOWN_LAYOUTS[family]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hook_on_mlp_out_fires(family: str) -> None:
    model = shared(family)
    anatomy = resolve_anatomy(model)
    _, inter, _ = FAMILIES[family]
    seen: list[tuple[int, int]] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((inputs[0].shape[-1], output.shape[-1]))

    handle = anatomy.mlp_out_module(model, LAYERS - 1).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=torch.randint(3, VOCAB, (2, 5)))
    finally:
        handle.remove()
    assert seen == [(inter, HIDDEN)]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_add_weight_delta_in_out_in_orientation(family: str) -> None:
    model = build(family)
    anatomy = resolve_anatomy(model)
    module = anatomy.mlp_out_module(model, 0)
    x = torch.randn(4, anatomy.intermediate_size(model))
    with torch.no_grad():
        before_out = module(x)
    before = weight_as_out_in(module, anatomy.transposed).clone()
    delta = torch.randn(anatomy.mlp_out_shape(model), dtype=torch.float64)
    add_weight_delta(module, delta, anatomy.transposed)
    after = weight_as_out_in(module, anatomy.transposed)
    torch.testing.assert_close(after, before + delta.float())
    with torch.no_grad():
        torch.testing.assert_close(module(x), before_out + x @ delta.float().T)
    with pytest.raises(ValueError, match="shape"):
        add_weight_delta(module, delta.T, anatomy.transposed)


def test_transposed_is_detected_from_module_type() -> None:
    assert is_transposed(Conv1D(8, 4))
    assert not is_transposed(nn.Linear(4, 8))
    model = build("llama")
    for block in model.model.layers:
        block.mlp.down_proj = Conv1D(HIDDEN, INTER)
    assert resolve_anatomy(model).transposed is True


def test_wrong_weights_transposed_is_caught() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="weights_transposed=False"):
        resolve_anatomy(shared("gpt2"), {"weights_transposed": False})
    assert resolve_anatomy(shared("llama"), {"weights_transposed": "false"}).transposed is False


class InOutProjection(nn.Module):
    """A custom projection storing its weight as (in, out), like Conv1D but not one."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_weights_transposed_applies_to_custom_projections() -> None:
    model = build("llama")
    for block in model.model.layers:
        block.mlp.down_proj = InOutProjection(INTER, HIDDEN)
    anatomy = resolve_anatomy(model, {"weights_transposed": "true"})
    assert anatomy.transposed is True
    assert anatomy.mlp_out_shape(model) == (HIDDEN, INTER)
    with pytest.raises(UnsupportedArchitectureError, match="hidden size"):
        resolve_anatomy(model, {"mlp_out_module": "mlp.down_proj", "weights_transposed": False})


def test_opt_without_final_norm() -> None:
    config = transformers.OPTConfig(
        **SMALL, ffn_dim=INTER, word_embed_proj_dim=HIDDEN, do_layer_norm_before=False
    )
    model = AutoModelForCausalLM.from_config(config)
    anatomy = resolve_anatomy(model)
    assert anatomy.final_norm == ""
    assert isinstance(anatomy.final_norm_module(model), nn.Identity)
    assert anatomy.mlp_out == "fc2"


def test_broken_table_entry_falls_back_to_introspection(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = ModelAnatomy("model.blocks", "mlp.nope", "mlp.nope", "nope", "model.nope", "nope")
    monkeypatch.setitem(KNOWN_LAYOUTS, "llama", bogus)
    model = build("llama")
    expected = ModelAnatomy(
        "model.layers", "mlp.up_proj", "mlp.down_proj", "self_attn.o_proj", "model.norm", "lm_head"
    )
    assert resolve_anatomy(model) == expected


def test_overrides_take_precedence() -> None:
    model = build("llama")
    anatomy = resolve_anatomy(
        model,
        {
            "mlp_in_module": "mlp.gate_proj",
            "mlp_out_module": "model.layers.0.mlp.down_proj",
            "final_norm_module": "identity",
            "weights_transposed": "false",
            "attn_out_module": None,
        },
    )
    assert anatomy.mlp_in == "mlp.gate_proj"
    assert anatomy.mlp_out == "mlp.down_proj"
    assert anatomy.attn_out == "self_attn.o_proj"
    assert anatomy.final_norm == ""
    assert anatomy.transposed is False


def test_unknown_override_key_lists_valid_keys() -> None:
    model = build("llama")
    with pytest.raises(ValueError, match="mlp_out_modul") as info:
        resolve_anatomy(model, {"mlp_out_modul": "mlp.down_proj"})
    assert not isinstance(info.value, UnsupportedArchitectureError)
    for key in OVERRIDE_KEYS:
        assert key in str(info.value)


def test_bad_override_path_names_the_path() -> None:
    model = build("llama")
    with pytest.raises(UnsupportedArchitectureError, match=r"mlp\.down_projj") as info:
        resolve_anatomy(model, {"mlp_out_module": "mlp.down_projj"})
    assert "mlp.down_proj (48->32)" in str(info.value)
    with pytest.raises(UnsupportedArchitectureError, match="model.blocks"):
        resolve_anatomy(model, {"layers_module": "model.blocks"})
    with pytest.raises(UnsupportedArchitectureError, match="hidden size"):
        resolve_anatomy(model, {"mlp_out_module": "mlp.up_proj"})
    with pytest.raises(ValueError, match="weights_transposed"):
        resolve_anatomy(model, {"weights_transposed": "maybe"})


def test_split_anatomy_overrides() -> None:
    anatomy, rest = split_anatomy_overrides({"pretrained": "x", "mlp_out_module": "mlp.fc2"})
    assert anatomy == {"mlp_out_module": "mlp.fc2"}
    assert rest == {"pretrained": "x"}


class ToyConfig(PretrainedConfig):
    """Config of the unknown test architectures."""

    model_type = "toy"

    def __init__(self, hidden_size: int = 16, num_hidden_layers: int = 2, **kwargs: object):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        super().__init__(**kwargs)


class ToyPreTrained(PreTrainedModel):
    """Base class wiring ToyConfig into transformers."""

    config_class = ToyConfig
    base_model_prefix = "backbone"

    def _init_weights(self, module: nn.Module) -> None:
        return None


class RecognisableBlock(nn.Module):
    """A block with unusual names but a readable structure."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.attention = nn.ModuleDict(
            {name: nn.Linear(hidden, hidden) for name in ("query", "key", "value", "output")}
        )
        self.ffn = nn.ModuleDict(
            {"expand": nn.Linear(hidden, 3 * hidden), "contract": nn.Linear(3 * hidden, hidden)}
        )


class Backbone(nn.Module):
    """Embedding, norm, blocks, norm."""

    def __init__(self, config: ToyConfig, block: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, config.hidden_size)
        self.emb_norm = nn.LayerNorm(config.hidden_size)
        self.blocks = nn.ModuleList(block(config.hidden_size) for _ in range(2))
        self.post_norm = nn.LayerNorm(config.hidden_size)


class ToyModel(ToyPreTrained):
    """An unknown model type whose layout introspection can read."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.backbone = Backbone(config, RecognisableBlock)
        self.to_vocab = nn.Linear(config.hidden_size, 10, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.to_vocab


class OpaqueBlock(nn.Module):
    """Two same-shaped projections with meaningless names: nothing can be told apart."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mix = nn.ModuleDict({"a": nn.Linear(hidden, hidden), "b": nn.Linear(hidden, hidden)})


class OpaqueModel(ToyPreTrained):
    """An unknown model type whose blocks cannot be read."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.backbone = Backbone(config, OpaqueBlock)
        self.to_vocab = nn.Linear(config.hidden_size, 10, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.to_vocab


class NoLayersModel(nn.Module):
    """Blocks kept as plain attributes, no ModuleList anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ToyConfig()
        self.block0 = RecognisableBlock(16)
        self.block1 = RecognisableBlock(16)


def test_introspection_reads_unknown_model_type() -> None:
    model = ToyModel(ToyConfig())
    assert resolve_anatomy(model) == ModelAnatomy(
        layers="backbone.blocks",
        mlp_in="ffn.expand",
        mlp_out="ffn.contract",
        attn_out="attention.output",
        final_norm="backbone.post_norm",
        lm_head="to_vocab",
    )


def test_unreadable_block_names_the_overrides() -> None:
    model = OpaqueModel(ToyConfig())
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_anatomy(model)
    message = str(info.value)
    assert "'toy'" in message
    assert "mlp_out_module=<path relative to a block>, e.g. mlp.down_proj" in message
    assert "mlp_in_module=" in message and "attn_out_module=" in message
    assert "layers_module=" not in message
    anatomy = resolve_anatomy(
        model, {"mlp_in_module": "mix.a", "mlp_out_module": "mix.b", "attn_out_module": "mix.a"}
    )
    assert anatomy.mlp_out == "mix.b"
    assert anatomy.final_norm == "backbone.post_norm"


def test_missing_layers_names_layers_override() -> None:
    with pytest.raises(UnsupportedArchitectureError) as info:
        resolve_anatomy(NoLayersModel())
    message = str(info.value)
    assert "'toy'" in message
    assert "layers_module=<path of the nn.ModuleList of blocks" in message
    assert "lm_head_module=" in message
