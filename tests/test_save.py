"""``lm-edit save``: a weight edit is written as a plain Hugging Face folder that lm-eval's
``hf`` model loads with the edited outputs; an editor that adds modules or prompts is
refused before anything is written; foreign folders are never replaced."""

from __future__ import annotations

import json

import pytest
import torch

from lm_edit.cli import main
from lm_edit.saving import EDITS_FILE, SaveError, save_edited
from tests.test_sweep import ROME_FAST, tiny_setup  # noqa: F401 - the module fixture


def _logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(tokenizer(text, return_tensors="pt")["input_ids"]).logits[0, -1]


def test_a_weight_edit_reloads_with_lm_evals_hf_model(tiny_setup, tmp_path, isolated_cache):  # noqa: F811
    from lm_eval.models.huggingface import HFLM

    from lm_edit.evaluation.model import EditedLM

    model_dir, _ = tiny_setup
    args = {"pretrained": str(model_dir), "editor": "rome", "n_edits": 2, "edit_data": "demo"}
    args.update({k: v for k, v in ROME_FAST.items()})
    out = save_edited({**args, "device": "cpu"}, tmp_path / "edited")
    provenance = json.loads((out / EDITS_FILE).read_text())
    assert provenance["session"]["editor"] == "rome"
    assert len(provenance["session"]["case_ids"]) == 2
    assert provenance["model_args"]["individual_scores"] is False  # nothing is evaluated

    edited = EditedLM(**args, device="cpu")
    reloaded = HFLM(pretrained=str(out), device="cpu")
    unedited = HFLM(pretrained=str(model_dir), device="cpu")
    prompt = edited.planned_requests[0].prompt
    expected = _logits(edited.model, edited.tokenizer, prompt)
    assert torch.equal(_logits(reloaded.model, reloaded.tokenizer, prompt), expected)
    assert not torch.equal(_logits(unedited.model, unedited.tokenizer, prompt), expected)


def test_an_editor_that_adds_modules_is_refused_and_nothing_is_written(tiny_setup, tmp_path):  # noqa: F811
    model_dir, _ = tiny_setup
    args = {"pretrained": str(model_dir), "editor": "grace", "n_edits": 1, "n_iter": 2}
    with pytest.raises(SaveError, match="--model edited-hf"):
        save_edited({**args, "edit_data": "demo", "device": "cpu"}, tmp_path / "edited")
    assert not (tmp_path / "edited").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_folder_is_never_replaced(tiny_setup, tmp_path, capsys):  # noqa: F811
    model_dir, _ = tiny_setup
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    argv = ["save", "--model_args", f"pretrained={model_dir},editor=none,n_edits=1"]
    argv += ["--output", str(target), "--overwrite"]
    assert main(argv) != 0
    assert "did not write" in capsys.readouterr().err
    assert (target / "notes.txt").read_text() == "keep me"


def test_an_earlier_save_is_replaced_only_with_overwrite(tiny_setup, tmp_path, capsys):  # noqa: F811
    model_dir, _ = tiny_setup
    target = tmp_path / "edited"
    argv = ["save", "--model_args", f"pretrained={model_dir},editor=none,n_edits=1,edit_data=demo"]
    argv += ["--output", str(target), "--device", "cpu"]
    assert main(argv) == 0
    assert "--model hf" in capsys.readouterr().out
    assert main(argv) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert (target / EDITS_FILE).is_file() and (target / "config.json").is_file()
