"""KE (KnowledgeEditor): the update network computes ``max_scale · σ(η) · (G ⊙ A + B)``
with rank-one ``A, B``; the condition LSTM reads each edit's own tokens whatever the
padding; the editor writes ``W + ΔW`` from the gradient of the edit loss and undoes it
exactly; training is deterministic and resumes to the same bytes; checkpoints of another
editor and missing ones are refused by name; the command line trains a network that the
editor then edits with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lm_edit.cli import _KE_FLAGS, main
from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.tokens import pad_batch
from lm_edit.editors.learned.checkpoint import KE_CHECKPOINT, CheckpointError
from lm_edit.editors.learned.editor import MendConfig, chosen_weights
from lm_edit.editors.learned.factors import condition_batch, gradient_factors, request_rows
from lm_edit.editors.learned.ke_network import ConditionedUpdate, EditCondition, KeNetwork
from lm_edit.editors.learned.ke_training import KeTrainSettings
from lm_edit.editors.learned.run_folder import OutputFolderError
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.mend_fixtures import (
    assert_flags_are_settings,
    file_hash,
    train_tiny,
    train_tiny_ke,
    write_counterfact,
)
from tests.test_editor_lifecycle import REQUESTS


class Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


@pytest.fixture
def data_file(tmp_path):
    return write_counterfact(tmp_path)


def test_the_update_is_the_gated_sum_of_the_scaled_gradient_and_a_rank_one_shift():
    torch.manual_seed(0)
    update = ConditionedUpdate((3, 5), condition_dim=4, hidden_dim=6, max_scale=0.5)
    condition, gradient = torch.randn(1, 4), torch.randn(3, 5)
    col_a, row_a, col_b, row_b, gate = update.mlp(condition)[0].split([5, 3, 5, 3, 1])
    a = torch.outer(F.softmax(row_a, -1), col_a)
    b = torch.outer(F.softmax(row_b, -1), col_b)
    expected = 0.5 * torch.sigmoid(gate) * (gradient * a + b)
    assert torch.allclose(update(condition, gradient), expected, atol=1e-6)


def test_the_condition_reads_each_edit_alone_whatever_the_padding():
    torch.manual_seed(0)
    condition = EditCondition(torch.randn(20, 6), hidden_dim=5, condition_dim=4)
    short, long = [3, 4, 5], [7, 8, 9, 10, 11, 12]
    together = condition(pad_batch([short, long]))
    alone = torch.cat([condition(pad_batch([short])), condition(pad_batch([long]))])
    assert torch.allclose(together, alone, atol=1e-6)
    embedded = condition.embedding(torch.tensor([short]))
    _, (final, _) = condition.lstm(embedded)
    by_hand = torch.tanh(condition.linear(torch.cat([final[0], final[1]], dim=-1)))
    assert torch.allclose(alone[:1], by_hand, atol=1e-6)


def test_the_network_turns_the_factors_gradient_into_minus_the_update():
    torch.manual_seed(0)
    network = KeNetwork({"w": (5, 3)}, torch.randn(20, 6), 8, 4, 1.0, seed=0)
    u, delta = torch.randn(7, 5), torch.randn(7, 3)
    tokens = pad_batch([[1, 2, 3]])
    vector = network.condition(tokens)
    expected = -network.updates["w"](vector, delta.T @ u)
    assert torch.allclose(network.deltas({"w": (u, delta)}, tokens)["w"], expected)
    with pytest.raises(ValueError, match="exactly one edit"):
        network.deltas({"w": (u, delta)}, pad_batch([[1, 2], [3, 4]]))
    again = KeNetwork({"w": (5, 3)}, torch.randn(20, 6), 8, 4, 1.0, seed=0)
    assert torch.equal(
        again.updates["w"].mlp[0].parametrizations.weight.original1,
        network.updates["w"].mlp[0].parametrizations.weight.original1,
    )


def test_the_edit_is_w_plus_the_networks_update_and_undo_is_exact(
    tiny_tokenizer, data_file, tmp_path
):
    folder = tmp_path / "ke"
    train_tiny_ke(tiny_tokenizer, data_file, folder)
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stream = EditStream.create(model, tiny_tokenizer, "ke", editor_checkpoint=str(folder))
    stream.editor.prepare(model, tiny_tokenizer)
    weights = chosen_weights(model, resolve_anatomy(model), MendConfig())
    request = REQUESTS[0]
    _, factors = gradient_factors(model, weights, request_rows(tiny_tokenizer, [request]))
    with torch.no_grad():
        deltas = stream.editor.network.deltas(factors, condition_batch(tiny_tokenizer, request))
    stream.apply([request], progress=False)
    for weight in weights:
        expected = before[weight.name] - deltas[weight.name]
        assert torch.allclose(model.get_parameter(weight.name), expected, atol=1e-6)
    stream.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_is_deterministic_and_a_killed_run_resumes_to_the_same_bytes(
    tiny_tokenizer, data_file, tmp_path
):
    hashes = []
    for name, seed in (("first", 1), ("second", 1), ("other-seed", 2)):
        train_tiny_ke(tiny_tokenizer, data_file, tmp_path / name, seed=seed)
        hashes.append(file_hash(tmp_path / name / KE_CHECKPOINT.file))
    assert hashes[0] == hashes[1] != hashes[2]

    def kill(step: int) -> None:
        raise Killed(step)

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train_tiny_ke(tiny_tokenizer, data_file, killed, seed=1, on_checkpoint=kill)
    train_tiny_ke(tiny_tokenizer, data_file, killed, seed=1)
    assert file_hash(killed / KE_CHECKPOINT.file) == hashes[0]


def test_missing_and_other_editors_checkpoints_are_refused_by_name(
    tiny_tokenizer, data_file, tmp_path
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(ValueError, match="needs a trained KE network.*lm-edit train ke"):
        EditStream.create(model, tiny_tokenizer, "ke").apply(REQUESTS[:1], progress=False)
    mend = tmp_path / "mend"
    train_tiny(tiny_tokenizer, data_file, mend, steps=2)
    stream = EditStream.create(model, tiny_tokenizer, "ke", editor_checkpoint=str(mend))
    with pytest.raises(CheckpointError, match=r"holds no ke\.pt.*lm-edit train ke"):
        stream.apply(REQUESTS[:1], progress=False)
    ke = tmp_path / "ke"
    train_tiny_ke(tiny_tokenizer, data_file, ke, steps=2)
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(ke))
    with pytest.raises(CheckpointError, match=r"holds no mend\.pt"):
        stream.apply(REQUESTS[:1], progress=False)
    with pytest.raises(OutputFolderError, match=r"lm-edit train ke did not write \(mend\.pt\)"):
        train_tiny_ke(tiny_tokenizer, data_file, mend)


def test_the_command_line_flags_are_the_training_settings():
    assert_flags_are_settings(_KE_FLAGS, KeTrainSettings)


def test_the_command_line_trains_a_network_the_editor_uses(
    tiny_tokenizer, data_file, tmp_path, monkeypatch, capsys
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    output = tmp_path / "run"
    flags = ["--steps", "2", "--val_every", "2", "--val_cases", "2", "--batch_size", "1"]
    flags += ["--hidden_dim", "8", "--condition_dim", "8", "--no_progress"]
    code = main(
        ["train", "ke", "--model_args", f"pretrained={tmp_path / 'model'}"]
        + ["--train_data", str(data_file), "--output", str(output), *flags]
    )
    assert code == 0
    assert "KE network after 2 steps" in capsys.readouterr().out
    stream = EditStream.create(model, tiny_tokenizer, "ke", editor_checkpoint=str(output))
    before = model.model.layers[-1].mlp.down_proj.weight.clone()
    stream.apply(REQUESTS[:1], progress=False)
    assert not torch.equal(model.model.layers[-1].mlp.down_proj.weight, before)


def test_a_conv1d_weight_is_updated_in_its_stored_orientation(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    network = KeNetwork({"w": (5, 3)}, torch.randn(20, 6), 8, 4, 1.0, 0, ("w",))
    u, delta = torch.randn(7, 5), torch.randn(7, 3)
    tokens = pad_batch([[1, 2, 3]])
    stored = network.updates["w"](network.condition(tokens), (delta.T @ u).T)
    assert stored.shape == (5, 3)
    assert torch.allclose(network.deltas({"w": (u, delta)}, tokens)["w"], -stored.T)
    data = write_counterfact(tmp_path)
    model = make_tiny_model("gpt2", len(tiny_tokenizer))
    from lm_edit.data.loading import load_edit_data
    from lm_edit.editors.learned.ke_training import train_ke

    settings = KeTrainSettings(steps=2, batch_size=1, hidden_dim=8, condition_dim=8, val_cases=2)
    folder = tmp_path / "ke-gpt2"
    anatomy = resolve_anatomy(model)
    train_ke(
        model,
        tiny_tokenizer,
        load_edit_data(str(data)),
        folder,
        settings,
        MendConfig(),
        anatomy,
        progress=False,
    )
    stream = EditStream.create(model, tiny_tokenizer, "ke", editor_checkpoint=str(folder))
    before = model.transformer.h[-1].mlp.c_proj.weight.clone()
    stream.apply(REQUESTS[:1], progress=False)
    assert stream.editor.network.stored_transposed == {w.name for w in stream.editor.weights}
    assert not torch.equal(model.transformer.h[-1].mlp.c_proj.weight, before)
    stream.undo()
    assert torch.equal(model.transformer.h[-1].mlp.c_proj.weight, before)
