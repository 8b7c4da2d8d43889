"""``lm-edit train mend``: a short run writes a checkpoint, its settings and a validation
report and nothing outside its folder; the same seed gives the same checkpoint bytes; a
run killed after a checkpoint, or stopped early by a smaller --steps, resumes to the
same final checkpoint; folders holding anything else, and resumptions with other
settings, are refused; the command line trains a network that edited-hf then edits with."""

from __future__ import annotations

import json

import pytest
import torch

from lm_edit.cli import _TRAIN_FLAGS, main
from lm_edit.core.tokens import prompt_and_target
from lm_edit.data.loading import EditData
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.checkpoint import CHECKPOINT_FILE
from lm_edit.editors.learned.objective import unrelated_row
from lm_edit.editors.learned.run_folder import REPORT_FILE, RUN_FILE, OutputFolderError
from lm_edit.editors.learned.training import TrainSettings
from tests.conftest import make_tiny_model
from tests.mend_fixtures import (
    COUNTERFACT,
    assert_flags_are_settings,
    file_hash,
    train_tiny,
    write_counterfact,
)


class Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


@pytest.fixture
def data_file(tmp_path):
    return write_counterfact(tmp_path)


def test_a_short_run_writes_its_checkpoint_settings_and_report_only(
    tiny_tokenizer, data_file, tmp_path
):
    output = tmp_path / "run"
    before = {p.name for p in tmp_path.iterdir()}
    report = train_tiny(tiny_tokenizer, data_file, output)
    assert {p.name for p in tmp_path.iterdir()} == before | {"run"}
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [CHECKPOINT_FILE, RUN_FILE, REPORT_FILE]
    )
    final = report["final"]
    assert final["step"] == 6 and final["cases"] == 2
    for key in ("edit_success", "locality"):
        assert 0.0 <= final[key] <= 1.0
    assert [h["step"] for h in report["history"]] == [3, 6]
    assert json.loads((output / REPORT_FILE).read_text()) == report
    run = json.loads((output / RUN_FILE).read_text())
    assert run["kind"] == "lm-edit train mend" and len(run["validation_case_ids"]) == 2
    assert run["settings"]["lr"] == 1e-3 and "steps" not in run["settings"]
    assert run["train_data"]["records"] == len(COUNTERFACT)


def test_the_same_seed_gives_the_same_checkpoint_bytes(tiny_tokenizer, data_file, tmp_path):
    hashes = []
    for name, seed in (("first", 3), ("second", 3), ("other-seed", 4)):
        train_tiny(tiny_tokenizer, data_file, tmp_path / name, seed=seed)
        hashes.append(file_hash(tmp_path / name / CHECKPOINT_FILE))
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_killed_or_shortened_run_resumes_to_the_same_checkpoint(
    tiny_tokenizer, data_file, tmp_path
):
    whole = tmp_path / "whole"
    train_tiny(tiny_tokenizer, data_file, whole)
    expected = file_hash(whole / CHECKPOINT_FILE)

    killed = tmp_path / "killed"

    def kill(step: int) -> None:
        raise Killed(step)

    with pytest.raises(Killed):
        train_tiny(tiny_tokenizer, data_file, killed, on_checkpoint=kill)
    assert torch.load(killed / CHECKPOINT_FILE, weights_only=True)["step"] == 2
    assert not (killed / REPORT_FILE).exists()
    seen: list[int] = []
    train_tiny(tiny_tokenizer, data_file, killed, on_checkpoint=seen.append)
    assert seen == [4, 6]
    assert file_hash(killed / CHECKPOINT_FILE) == expected

    shortened = tmp_path / "shortened"
    train_tiny(tiny_tokenizer, data_file, shortened, steps=3)  # 3 is no checkpoint step
    assert torch.load(shortened / CHECKPOINT_FILE, weights_only=True)["step"] == 3
    train_tiny(tiny_tokenizer, data_file, shortened)
    assert file_hash(shortened / CHECKPOINT_FILE) == expected
    report = json.loads((shortened / REPORT_FILE).read_text())
    assert report == json.loads((whole / REPORT_FILE).read_text())


def test_resuming_with_other_settings_data_or_fewer_steps_is_refused(
    tiny_tokenizer, data_file, tmp_path
):
    output = tmp_path / "run"
    train_tiny(tiny_tokenizer, data_file, output, steps=2)
    saved = file_hash(output / CHECKPOINT_FILE)
    with pytest.raises(OutputFolderError, match=r"another settings: lr: 0\.001 \(run\) vs 0\.002"):
        train_tiny(tiny_tokenizer, data_file, output, lr=2e-3)
    (tmp_path / "other").mkdir()
    changed = write_counterfact(tmp_path / "other")
    records = json.loads(changed.read_text())
    records[0]["requested_rewrite"]["target_new"]["str"] = "Oslo"
    changed.write_text(json.dumps(records))
    with pytest.raises(OutputFolderError, match="another train data: content_sha256"):
        train_tiny(tiny_tokenizer, changed, output)
    with pytest.raises(OutputFolderError, match="at step 2, beyond --steps 1"):
        train_tiny(tiny_tokenizer, data_file, output, steps=1)
    assert file_hash(output / CHECKPOINT_FILE) == saved


def test_a_checkpoint_from_before_locality_positions_resumes_as_all(
    tiny_tokenizer, data_file, tmp_path
):
    output = tmp_path / "run"
    train_tiny(tiny_tokenizer, data_file, output, steps=2, locality_positions="all")
    checkpoint = torch.load(output / CHECKPOINT_FILE, weights_only=True)
    del checkpoint["settings"]["locality_positions"]  # as written before the setting
    torch.save(checkpoint, output / CHECKPOINT_FILE)
    with pytest.raises(OutputFolderError, match="locality_positions: 'all' \\(run\\) vs 'answer'"):
        train_tiny(tiny_tokenizer, data_file, output, steps=4)
    train_tiny(tiny_tokenizer, data_file, output, steps=4, locality_positions="all")
    assert torch.load(output / CHECKPOINT_FILE, weights_only=True)["step"] == 4


def test_the_locality_kl_is_averaged_where_locality_positions_says(tiny_tokenizer):
    prompt, answer = "Toyota is a car company from", "Japan Asia"
    whole, start = prompt_and_target(tiny_tokenizer, prompt, " " + answer)
    rows, on_answer = unrelated_row(tiny_tokenizer, (prompt, answer), "answer")
    _, on_all = unrelated_row(tiny_tokenizer, (prompt, answer), "all")
    assert rows.batch.input_ids[0].tolist() == whole
    assert on_answer[0].nonzero().flatten().tolist() == list(range(start, len(whole)))
    assert on_all[0].nonzero().flatten().tolist() == list(range(len(whole) - 1))
    with pytest.raises(ValueError, match="locality_positions must be one of 'answer', 'all'"):
        TrainSettings(locality_positions="prompt")


def test_a_network_trained_with_the_default_locality_positions_writes_an_edit(
    tiny_tokenizer, tmp_path
):
    from lm_edit.stream import EditStream
    from tests.test_editor_lifecycle import REQUESTS, _first_token, _logits

    extra = [
        EditRequest("x", "Michael Jordan plays the sport of", "Michael Jordan", "football"),
        EditRequest("y", "Danielle Darrieux is a native speaker of", "Danielle Darrieux", "Japan"),
    ]
    data = EditData([*REQUESTS, *extra], {"content_sha256": "default-positions"})
    output = tmp_path / "run"
    train_tiny(tiny_tokenizer, data, output, steps=30, val_every=30, val_cases=1, seed=0)
    assert TrainSettings().locality_positions == "answer"
    model = make_tiny_model("llama", len(tiny_tokenizer))
    request = REQUESTS[0]
    before = int(_logits(model, tiny_tokenizer, request.prompt).argmax())
    assert before != _first_token(tiny_tokenizer, request.target_new)
    stream = EditStream.create(model, tiny_tokenizer, "mend", editor_checkpoint=str(output))
    stream.apply([request], progress=False)
    answer = int(_logits(model, tiny_tokenizer, request.prompt).argmax())
    assert answer == _first_token(tiny_tokenizer, request.target_new)


def test_an_output_holding_anything_else_is_refused(tiny_tokenizer, data_file, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match=r"did not write \(notes\.txt\).*nothing was"):
        train_tiny(tiny_tokenizer, data_file, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(OutputFolderError, match="is not a folder"):
        train_tiny(tiny_tokenizer, data_file, data_file)
    other = tmp_path / "other-run"
    other.mkdir()
    (other / RUN_FILE).write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(OutputFolderError, match="not an lm-edit training run"):
        train_tiny(tiny_tokenizer, data_file, other)


def test_too_many_validation_cases_are_refused(tiny_tokenizer, data_file, tmp_path):
    with pytest.raises(ValueError, match="--val_cases 6 leaves no training case"):
        train_tiny(tiny_tokenizer, data_file, tmp_path / "run", val_cases=6)


def test_the_command_line_flags_are_the_training_settings():
    assert_flags_are_settings(_TRAIN_FLAGS, TrainSettings)


def test_the_command_line_trains_a_network_edited_hf_edits_with(
    tiny_tokenizer, data_file, tmp_path, capsys
):
    from lm_edit.evaluation.model import EditedLM

    model_dir = tmp_path / "model"
    make_tiny_model("llama", len(tiny_tokenizer)).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    output = tmp_path / "mend"
    argv = ["train", "mend", "--model_args", f"pretrained={model_dir}"]
    argv += ["--train_data", str(data_file), "--output", str(output), "--no_progress"]
    argv += ["--steps", "4", "--batch_size", "2", "--val_every", "2", "--val_cases", "2"]
    argv += ["--lr", "1e-3", "--lr_lr", "1e-2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MEND network after 4 steps" in out and f"editor_checkpoint={output}" in out
    assert torch.load(output / CHECKPOINT_FILE, weights_only=True)["step"] == 4

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    argv[argv.index(str(output))] = str(tmp_path / "junk")
    assert main(argv) == 2
    assert "did not write (x.txt)" in capsys.readouterr().err

    lm = EditedLM(
        pretrained=str(model_dir),
        device="cpu",
        editor="mend",
        editor_checkpoint=str(output),
        edit_data=str(data_file),
        n_edits=2,
        individual_scores=False,
    )
    unedited = make_tiny_model("llama", len(tiny_tokenizer)).state_dict()
    assert len(lm.edit_stream.records) == 2
    edited = lm.model.state_dict()
    changed = {k for k in unedited if not torch.equal(unedited[k], edited[k].cpu())}
    assert changed == set(lm.edit_stream.records[0].originals)
    assert len(changed) == 6
