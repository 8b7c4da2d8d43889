"""UltraEdit: the lifelong statistics follow the reference's running update; the turn's
change is the ridge solution; edits take on a tiny model; weights of one shape share
statistics; undo of a turn restores weights and statistics exactly; a non-finite change
is refused and leaves nothing behind; bad module choices are refused by name."""

from __future__ import annotations

import pytest
import torch

from lm_edit.data.requests import EditRequest
from lm_edit.editors.lifelong.normalizer import LifelongNormalizer
from lm_edit.editors.lifelong.update import ridge_solve, target_changes
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model

REQUESTS = [
    EditRequest("a", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "The country known for Toyota", "Toyota", "Germany", "Japan"),
    EditRequest("c", "The language spoken by Danielle Darrieux", "Danielle Darrieux", "Dutch"),
]
QUICK = {"layers": (2, 3), "lr": 0.1, "token_positions": "all"}
"""Settings under which all three edits of one turn take on the tiny random Llama."""


def _answer(model, tokenizer, prompt: str) -> int:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return int(model(ids).logits[0, -1].argmax())


def _first_token(tokenizer, target: str) -> int:
    return tokenizer(" " + target)["input_ids"][0]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _statistics(editor) -> dict:
    return {
        shape: (n.count, n.mean.clone(), n.squares.clone())
        for shape, n in editor.normalizers.items()
        if n.mean is not None
    }


def _same_statistics(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and torch.equal(a[k][1], b[k][1]) and torch.equal(a[k][2], b[k][2])
        for k in a
    )


def test_statistics_follow_the_reference_running_update():
    torch.manual_seed(0)
    first, second = torch.randn(5, 3), torch.randn(4, 3) * 2 + 1
    normalizer = LifelongNormalizer()
    normalizer.update(first)
    normalizer.update(second)
    both = torch.cat([first, second])
    assert normalizer.count == 9
    assert torch.allclose(normalizer.mean, both.mean(0), atol=1e-6)
    # The reference adds b · var(batch) (unbiased) per batch, plus the between-means term.
    shift = second.mean(0) - first.mean(0)
    squares = 5 * first.var(0) + 4 * second.var(0) + 5 * 4 * shift.pow(2) / 9
    assert torch.allclose(normalizer.squares, squares, atol=1e-5)
    spread = (squares / (9 - 1 + torch.finfo(torch.float32).eps)).sqrt()
    expected = (both - normalizer.mean) / (spread + torch.finfo(torch.float32).eps)
    assert torch.allclose(normalizer(both), expected, atol=1e-5)


def test_a_single_row_adds_no_spread_instead_of_nan():
    normalizer = LifelongNormalizer()
    normalizer.update(torch.tensor([[1.0, 2.0]]))
    assert torch.equal(normalizer.squares, torch.zeros(2))
    assert torch.isfinite(normalizer(torch.tensor([[3.0, 4.0]]))).all()
    normalizer.update(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(normalizer.std(), torch.tensor([2.0, 2.0]).sqrt(), atol=1e-5)


def test_the_change_is_the_ridge_solution_of_the_target_changes():
    torch.manual_seed(1)
    keys, grads = torch.randn(6, 4), torch.randn(6, 3)
    normalizer = LifelongNormalizer()
    normalizer.update(torch.cat([keys, grads], -1))
    targets = target_changes(keys, grads, normalizer, lr=0.1)
    standard = normalizer(torch.cat([keys, grads], -1))
    by_hand = -0.1 * standard[:, :4].pow(2).sum(-1, keepdim=True) * standard[:, 4:]
    assert torch.allclose(targets, by_hand)
    change = ridge_solve(keys, targets, ridge=2.0)
    # The gradient of ‖K Δ − V‖² + 2 ‖Δ‖² vanishes at the solution.
    residual = keys.T @ (keys @ change - targets) + 2.0 * change
    assert residual.abs().max() < 1e-5


def test_edits_take_in_one_turn_and_undo_is_exact(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    answers = [_answer(model, tiny_tokenizer, r.prompt) for r in REQUESTS]
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **QUICK)
    stream.apply(REQUESTS, batch_size=3, progress=False)
    taken = [
        _answer(model, tiny_tokenizer, r.prompt) == _first_token(tiny_tokenizer, r.target_new)
        for r in REQUESTS
    ]
    assert all(taken), taken
    assert answers != [_first_token(tiny_tokenizer, r.target_new) for r in REQUESTS]
    details = stream.records[0].details
    assert details["rows"] > 0 and all(v > 0 for v in details["update_norms"].values())
    stream.undo()
    assert _same(before, _state(model))
    assert stream.editor.normalizers == {} or not _statistics(stream.editor)


def test_undo_of_a_turn_restores_the_statistics_and_a_redo_is_identical(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **QUICK)
    stream.apply(REQUESTS[:2], batch_size=2, progress=False)
    after_first, statistics = _state(model), _statistics(stream.editor)
    stream.apply(REQUESTS[2:], batch_size=1, progress=False)
    after_second = _state(model)
    stream.editor.undo(model, stream.records.pop())
    assert _same(after_first, _state(model))
    assert _same_statistics(statistics, _statistics(stream.editor))
    stream.apply(REQUESTS[2:], batch_size=1, progress=False)
    assert _same(after_second, _state(model))


def test_statistics_carry_over_turns(tiny_tokenizer):
    """The second turn's change depends on the first turn's rows (lifelong statistics):
    the same turn on a fresh stream gives another change."""
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **QUICK)
    stream.apply(REQUESTS[:2], batch_size=2, progress=False)
    first = _state(model)
    stream.apply(REQUESTS[2:], batch_size=1, progress=False)
    lifelong = {k: v - first[k] for k, v in _state(model).items()}
    fresh = make_tiny_model("llama", len(tiny_tokenizer))
    fresh.load_state_dict(first)
    alone = EditStream.create(fresh, tiny_tokenizer, "ultraedit", **QUICK)
    alone.apply(REQUESTS[2:], batch_size=1, progress=False)
    changed = {k: v - first[k] for k, v in _state(fresh).items()}
    name = "model.layers.2.mlp.down_proj.weight"
    assert lifelong[name].norm() > 0 and changed[name].norm() > 0
    assert not torch.allclose(lifelong[name], changed[name])


def test_weights_of_one_shape_share_statistics(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(
        model,
        tiny_tokenizer,
        "ultraedit",
        **{**QUICK, "modules": ("mlp_gate", "mlp_in", "mlp_out")},
    )
    stream.apply(REQUESTS, batch_size=3, progress=False)
    gate = model.model.layers[2].mlp.gate_proj.weight
    assert gate.shape == model.model.layers[2].mlp.up_proj.weight.shape
    assert len(stream.editor.normalizers) == 2  # gate and up share (in, out); down is other
    rows = stream.records[0].details["rows"]
    counts = sorted(n.count for n in stream.editor.normalizers.values())
    assert counts == [2 * rows, 4 * rows]  # 2 blocks × down, and 2 blocks × (gate, up)


def test_a_non_finite_change_is_refused_and_nothing_is_left(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **{**QUICK, "lr": 1e38})
    with pytest.raises(FloatingPointError, match="not finite"):
        stream.apply(REQUESTS, batch_size=3, progress=False)
    assert _same(before, _state(model))
    assert not _statistics(stream.editor)


def test_bad_module_choices_are_refused_by_name(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(
        model, tiny_tokenizer, "ultraedit", edit_modules=("model.layers.9.mlp.down_proj",)
    )
    with pytest.raises(ValueError, match="no module 'model.layers.9.mlp.down_proj'"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", edit_modules=("model.norm",))
    with pytest.raises(ValueError, match="type LlamaRMSNorm, not a linear layer"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    gpt2 = make_tiny_model("gpt2", len(tiny_tokenizer))
    stream = EditStream.create(
        gpt2, tiny_tokenizer, "ultraedit", layers=(1,), modules=("mlp_gate",)
    )
    with pytest.raises(ValueError, match="no gate projection"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    with pytest.raises(ValueError, match="modules"):
        EditStream.create(model, tiny_tokenizer, "ultraedit", modules=("mlp_in", "mlp_in"))


def test_a_weight_is_never_chosen_twice_and_edit_modules_excludes_layers(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    down = "model.layers.2.mlp.down_proj"
    with pytest.raises(ValueError, match="names a module twice"):
        EditStream.create(model, tiny_tokenizer, "ultraedit", edit_modules=(down, f" {down}"))
    with pytest.raises(ValueError, match=r"edit_modules=\[\] chooses by layers"):
        EditStream.create(model, tiny_tokenizer, "ultraedit", edit_modules=(down,), layers=(2,))
    with pytest.raises(ValueError, match="layers and modules would be ignored"):
        EditStream.create(
            model, tiny_tokenizer, "ultraedit", edit_modules=(down,), modules=("mlp_in",)
        )
    cleared = EditStream.create(model, tiny_tokenizer, "ultraedit", edit_modules=("",))
    assert cleared.editor.config.edit_modules == ()


def test_a_fused_gate_up_projection_is_not_taken_for_a_gate(tiny_tokenizer):
    """Phi-3's gate_up_proj is the input projection itself: mlp_gate must not resolve to
    it (it would be edited twice with mlp_in)."""
    from lm_edit.core.anatomy import ModelAnatomy
    from lm_edit.editors.layers import mlp_gate_path

    model = make_tiny_model("llama", len(tiny_tokenizer))
    mlp = model.model.layers[1].mlp
    mlp.gate_up_proj = mlp.up_proj
    del mlp.up_proj, mlp.gate_proj
    anatomy = ModelAnatomy(
        "model.layers",
        "mlp.gate_up_proj",
        "mlp.down_proj",
        "self_attn.o_proj",
        "model.norm",
        "lm_head",
    )
    with pytest.raises(ValueError, match="no gate projection"):
        mlp_gate_path(model, anatomy, 1)


def test_a_linear_layer_in_a_conv1d_model_is_edited_in_its_own_orientation(tiny_tokenizer):
    """On GPT-2 (Conv1D, weights stored as (in, out)) an nn.Linear named in edit_modules
    keeps the (out, in) orientation: the same edit as the equivalent Conv1D, transposed."""
    from torch import nn

    requests = REQUESTS[:2]
    conv_model = make_tiny_model("gpt2", len(tiny_tokenizer))
    linear_model = make_tiny_model("gpt2", len(tiny_tokenizer))
    conv = linear_model.transformer.h[1].attn.c_proj
    linear = nn.Linear(conv.weight.shape[0], conv.weight.shape[1])
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    linear_model.transformer.h[1].attn.c_proj = linear
    path = "transformer.h.1.attn.c_proj"
    changes = []
    for model in (conv_model, linear_model):
        before = model.get_submodule(path).weight.detach().clone()
        settings = {"edit_modules": (path,), "lr": 0.1, "token_positions": "all"}
        stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **settings)
        stream.apply(requests, batch_size=2, progress=False)
        changes.append(model.get_submodule(path).weight.detach() - before)
    assert changes[0].norm() > 1
    assert torch.allclose(changes[0], changes[1].T, atol=1e-4)


def test_undo_after_reset_takes_every_turn_back(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", **QUICK)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    stream.editor.reset()
    stream.undo()
    assert _same(before, _state(model)) and stream.editor.normalizers == {}


def test_a_module_the_forward_pass_skips_is_refused_by_name(tiny_tokenizer):
    from torch import nn

    model = make_tiny_model("llama", len(tiny_tokenizer))
    model.model.unused = nn.Linear(4, 4)
    stream = EditStream.create(model, tiny_tokenizer, "ultraedit", edit_modules=("model.unused",))
    with pytest.raises(ValueError, match="model.unused: not called in the model's forward"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
