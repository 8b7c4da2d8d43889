"""Editing a model whose blocks live on different devices (``device_map`` /
``parallelize=True``): every editor's edit takes, every weight stays on the device that
holds it, and undo is exact.

The model is dispatched with accelerate's hooks, as ``from_pretrained(device_map=...)``
does. On a machine with a GPU, blocks alternate between the GPU and the CPU, so keys,
values, statistics and solves must meet across devices; without one, every block is on the
CPU behind the same hooks. A block that accelerate offloads (weights on the meta device,
loaded at each forward) is refused by name before anything changes.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import dispatch_model

from lm_edit.core.placement import OffloadedWeightsError
from lm_edit.core.record import temporarily_unedited
from lm_edit.editors import known_editors
from lm_edit.editors.registry import implementation_of
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.test_editor_lifecycle import (
    REQUESTS,
    _first_token,
    _same_state,
    _state,
    _stream,
    trained,  # noqa: F401  (fixture)
)

EDITORS = [name for name in known_editors() if name != "none"]
GPU = "cuda:0" if torch.cuda.is_available() else None


def _split_map(second: str | torch.device) -> dict[str, str | torch.device]:
    """Embedding, odd blocks and the head on the CPU; even blocks and the norm on
    ``second``."""
    return {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.layers.0": second,
        "model.layers.1": "cpu",
        "model.layers.2": second,
        "model.layers.3": "cpu",
        "model.norm": second,
        "lm_head": "cpu",
    }


def _dispatched(tokenizer, second: str | torch.device):
    model = make_tiny_model("llama", len(tokenizer))
    return dispatch_model(model, _split_map(second), main_device="cpu")


def _misplaced(model, placement: dict[str, str | torch.device]) -> list[str]:
    """Weights (the editor's added ones too) not on the device of the module holding them."""
    wrong = []
    for name, tensor in model.state_dict().items():
        owner = max((p for p in placement if name.startswith(p + ".")), key=len)
        if tensor.device != torch.device(placement[owner]):
            wrong.append(f"{name} on {tensor.device}")
    return wrong


def _answer(model, tokenizer, prompt: str) -> int:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return int(model(ids).logits[0, -1].argmax())


# torch.device("cpu") beside "cpu" makes accelerate see two placements and attach its
# device hooks to every block and layer, as on a real split, instead of a plain .to("cpu").
PLACEMENTS = [torch.device("cpu")] + ([GPU] if GPU else [])


@pytest.mark.parametrize("second", PLACEMENTS)
@pytest.mark.parametrize("name", EDITORS)
def test_edit_on_a_split_model_takes_in_place_and_undoes(
    name,
    second,
    tiny_tokenizer,
    isolated_cache,
    trained,  # noqa: F811
    request,
):
    if name == "lora" and second == GPU:
        reason = "failed on an H200 with blocks split between it and the CPU; not yet diagnosed"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
    model = _dispatched(tiny_tokenizer, second)
    before = _state(model)
    stream = _stream(name, model, tiny_tokenizer, trained=trained)
    stream.apply(REQUESTS, batch_size=1, progress=False)
    edited = _state(model)
    assert not _misplaced(model, _split_map(second))
    if stream.editor.changes_outputs and not stream.editor.changes_prompts:
        for case in REQUESTS:
            expected = _first_token(tiny_tokenizer, case.target_new)
            assert _answer(model, tiny_tokenizer, case.prompt) == expected, case.case_id
    with temporarily_unedited(model, stream.records):
        assert _same_state(before, model)
    assert _same_state(edited, model)


@pytest.mark.skipif(GPU is None, reason="needs a GPU: one block on it, the rest on the CPU")
@pytest.mark.parametrize("name", ["rome", "memit", "alphaedit"])
def test_the_edit_lands_on_the_device_that_holds_the_layer(name, tiny_tokenizer, isolated_cache):
    model = _dispatched(tiny_tokenizer, GPU)
    settings = {**implementation_of(name).quick_settings, "layers": [2]}
    stream = EditStream.create(model, tiny_tokenizer, name, **settings)
    weight = model.model.layers[2].mlp.down_proj.weight
    before = weight.detach().clone()
    stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    assert weight.device == torch.device(GPU)
    assert not torch.equal(weight, before)
    stream.undo()
    assert torch.equal(weight, before)


@pytest.mark.parametrize("name", ["rome", "ft-l", "grace"])
def test_an_offloaded_layer_is_refused_by_name_and_nothing_changes(
    name, tiny_tokenizer, isolated_cache, tmp_path
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    placement = {**_split_map("cpu"), "model.layers.1": "disk", "model.layers.2": "disk"}
    model = dispatch_model(model, placement, main_device="cpu", offload_dir=str(tmp_path))
    stream = _stream(name, model, tiny_tokenizer)
    with pytest.raises(
        OffloadedWeightsError, match=r"^model\.layers\.1, model\.layers\.2: .*offloaded"
    ):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    assert not stream.records
    assert implementation_of(name) is type(stream.editor)
