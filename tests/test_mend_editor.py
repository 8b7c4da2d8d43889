"""MEND editing with a trained network: the update is the sum of rank-one outer products
of the transformed factors, scaled by the learned step sizes; undo is exact; a trained
network raises the target's probability more than an untrained one; checkpoints made for
another model, other layers or another format version, and a missing checkpoint, are
refused with the mismatch named."""

from __future__ import annotations

import pytest
import torch

from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.data.loading import load_edit_requests
from lm_edit.editors.learned import MendConfig
from lm_edit.editors.learned.checkpoint import (
    CHECKPOINT_FILE,
    FORMAT_VERSION,
    CheckpointError,
    build_network,
    read_checkpoint,
)
from lm_edit.editors.learned.editor import chosen_weights
from lm_edit.editors.learned.factors import gradient_factors, request_rows
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.mend_fixtures import train_tiny, write_counterfact


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_counterfact(tmp_path_factory.mktemp("mend-data"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tokenizer, data_file):
    """A network trained for 12 steps on the tiny Llama."""
    folder = tmp_path_factory.mktemp("mend-trained")
    train_tiny(tiny_tokenizer, data_file, folder, steps=12, val_every=6)
    return folder


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _target_logprob(model, tokenizer, request) -> float:
    rows = request_rows(tokenizer, [request])
    with torch.no_grad():
        logits = model(input_ids=rows.batch.input_ids).logits.float().log_softmax(-1)
    positions, tokens = rows.spans[0]
    return float(logits[0, positions, tokens].mean())


def test_the_update_is_the_sum_of_rank_one_products_and_undo_is_exact(
    trained, tiny_tokenizer, data_file
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = _state(model)
    request = load_edit_requests(str(data_file))[0]
    weights = chosen_weights(model, resolve_anatomy(model), MendConfig())
    assert [w.name for w in weights] == [
        f"model.layers.{layer}.mlp.{kind}.weight"
        for layer in (1, 2, 3)
        for kind in ("up_proj", "down_proj")
    ]
    _, factors = gradient_factors(model, weights, request_rows(tiny_tokenizer, [request]))
    network = build_network(read_checkpoint(trained))
    tokens = request_rows(tiny_tokenizer, [request]).batch.lengths[0]
    expected = {}
    with torch.no_grad():
        for index, weight in enumerate(weights):
            u, delta = factors[weight.name]
            assert u.shape[0] == delta.shape[0] <= tokens
            u_new, delta_new = network.transform(weight.name, u, delta)
            outer = sum(torch.outer(d, v) for d, v in zip(delta_new, u_new, strict=True))
            assert torch.linalg.matrix_rank(outer) <= u.shape[0]
            step = 2.5 * network.edit_lrs[index]
            expected[weight.name] = before[weight.name] - step * outer

    stream = EditStream.create(
        model, tiny_tokenizer, "mend", editor_checkpoint=str(trained), lr_scale=2.5
    )
    (record,) = stream.apply([request], progress=False)
    after = model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(expected) and sorted(record.originals) == sorted(expected)
    assert record.weights_only
    stream.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gpt2_weights_are_edited_in_their_stored_orientation(tiny_tokenizer, data_file, tmp_path):
    """GPT-2 stores its projections as (in, out) (Conv1D): the edit is transposed to match."""
    from lm_edit.data.loading import load_edit_data
    from lm_edit.editors.learned.training import TrainSettings, train_mend
    from tests.mend_fixtures import QUICK

    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    settings = TrainSettings(**{**QUICK, "steps": 2})
    data = load_edit_data(str(data_file))
    train_mend(
        model,
        tiny_tokenizer,
        data,
        tmp_path,
        settings,
        MendConfig(),
        resolve_anatomy(model),
        progress=False,
    )
    before = _state(model)
    request = data.requests[1]
    start = _target_logprob(model, tiny_tokenizer, request)
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(tmp_path))
    stream.apply([request], progress=False)
    names = [w.name for w in stream.editor.weights]
    assert names[:2] == ["transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"]
    for name in names:
        assert model.get_parameter(name).shape == before[name].shape
        assert not torch.equal(model.get_parameter(name), before[name])
    assert _target_logprob(model, tiny_tokenizer, request) > start
    stream.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _mean_gain(folder, tokenizer, requests) -> float:
    """Mean change of the target's log-probability when each request is edited alone."""
    model = make_tiny_model("llama", len(tokenizer))
    stream = EditStream.create(model, tokenizer, "mend", editor_checkpoint=str(folder))
    gains = []
    for request in requests:
        start = _target_logprob(model, tokenizer, request)
        stream.apply([request], progress=False)
        gains.append(_target_logprob(model, tokenizer, request) - start)
        stream.undo()
    return sum(gains) / len(gains)


def test_a_trained_network_raises_the_target_more_than_an_untrained_one(
    trained, tiny_tokenizer, data_file, tmp_path
):
    untrained = tmp_path / "untrained"
    # one step at a learning rate of 1e-12: the initial network and step sizes, with the
    # normalisation statistics of one step's factors (an untrained network has none)
    train_tiny(tiny_tokenizer, data_file, untrained, steps=1, lr=1e-12, lr_lr=1e-12)
    requests = load_edit_requests(str(data_file))
    trained_gain = _mean_gain(trained, tiny_tokenizer, requests)
    untrained_gain = _mean_gain(untrained, tiny_tokenizer, requests)
    assert trained_gain > untrained_gain + 0.5, (trained_gain, untrained_gain)


def test_without_a_checkpoint_the_editor_says_how_to_train_one(tiny_tokenizer, data_file):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    request = load_edit_requests(str(data_file))[0]
    stream = EditStream.create(model, tiny_tokenizer, "mend")
    with pytest.raises(ValueError, match=r"editor_checkpoint=.*lm-edit train mend"):
        stream.apply([request], progress=False)


def test_a_folder_without_a_checkpoint_is_refused(tiny_tokenizer, tmp_path):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(tmp_path))
    with pytest.raises(CheckpointError, match=f"holds no {CHECKPOINT_FILE}"):
        stream.editor.prepare(model, tiny_tokenizer)
    missing = EditStream.create(
        model, tiny_tokenizer, "mend", editor_checkpoint=str(tmp_path / "nowhere")
    )
    with pytest.raises(CheckpointError, match="is not a folder"):
        missing.editor.prepare(model, tiny_tokenizer)


def _other_llama(vocab_size: int):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        num_hidden_layers=4,
        hidden_size=32,
        intermediate_size=48,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=128,
    )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize(
    ("make", "mismatch"),
    [
        (lambda n: make_tiny_model("gpt2", n), r"model_type is 'llama' there but 'gpt2' here"),
        (_other_llama, r"intermediate_size is 64 there but 48 here"),
    ],
)
def test_a_checkpoint_for_another_model_is_refused(trained, tiny_tokenizer, make, mismatch):
    model = make(len(tiny_tokenizer))
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(trained))
    with pytest.raises(CheckpointError, match=f"another base model: {mismatch}"):
        stream.editor.prepare(model, tiny_tokenizer)


@pytest.mark.parametrize(
    "settings", [{"layers": [0, 1, 2]}, {"layer_count": 2}, {"modules": ["mlp_out"]}]
)
def test_a_checkpoint_for_other_weights_is_refused(trained, tiny_tokenizer, settings):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    stream = EditStream.create(
        model, tiny_tokenizer, "mend", editor_checkpoint=str(trained), **settings
    )
    with pytest.raises(CheckpointError, match=r"edits other weights .*layers\.1\.mlp\.up_proj"):
        stream.editor.prepare(model, tiny_tokenizer)


def test_another_format_version_or_a_foreign_file_is_refused(trained, tiny_tokenizer, tmp_path):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    checkpoint = read_checkpoint(trained)
    newer = tmp_path / "newer"
    newer.mkdir()
    torch.save({**checkpoint, "format_version": FORMAT_VERSION + 1}, newer / CHECKPOINT_FILE)
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(newer))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*retrain"):
        stream.editor.prepare(model, tiny_tokenizer)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"weights": torch.zeros(2)}, foreign / CHECKPOINT_FILE)
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(foreign))
    with pytest.raises(CheckpointError, match="not an lm-edit MEND checkpoint"):
        stream.editor.prepare(model, tiny_tokenizer)


def test_a_checkpoint_holds_only_plain_data(trained):
    """It loads with weights_only=True: tensors, dicts, lists, numbers and strings."""
    checkpoint = torch.load(trained / CHECKPOINT_FILE, weights_only=True)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (torch.Tensor, int, float, str))

    assert plain(checkpoint)
    assert checkpoint["step"] == 12 and checkpoint["base"]["model_type"] == "llama"
