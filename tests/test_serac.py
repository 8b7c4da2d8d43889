"""SERAC: ``lm-edit train serac`` writes a deterministic, resumable scope classifier;
the editor routes requests in an edit's scope to the counterfactual prompt and leaves the
rest alone, undoes exactly, and refuses checkpoints made for something else."""

from __future__ import annotations

import json

import pytest
import torch

from lm_edit.cli import _SERAC_FLAGS, main
from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.prompts import prompt_hooks, rewrite_prompt
from lm_edit.data.loading import load_edit_data
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.checkpoint import CheckpointError
from lm_edit.editors.learned.objective import EditCase
from lm_edit.editors.learned.run_folder import REPORT_FILE, RUN_FILE, OutputFolderError
from lm_edit.editors.serac.checkpoint import FEATURES_FILE, SERAC_CHECKPOINT
from lm_edit.editors.serac.memory import check_template
from lm_edit.editors.serac.training import SeracTrainSettings, scope_batch, train_serac
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.mend_fixtures import file_hash, train_tiny, write_counterfact

QUICK = {"steps": 6, "batch_size": 2, "val_every": 3, "val_cases": 2, "checkpoint_every": 2}
SERAC_FILE = SERAC_CHECKPOINT.file


class Killed(Exception):
    """Stands for the process being killed after a checkpoint."""


@pytest.fixture
def data_file(tmp_path):
    return write_counterfact(tmp_path)


def train_scope(tokenizer, data, output, *, model=None, on_checkpoint=None, **settings):
    """A short run on the tiny Llama (seed 0)."""
    model = model or make_tiny_model("llama", len(tokenizer))
    data = load_edit_data(str(data)) if not hasattr(data, "requests") else data
    return train_serac(
        model,
        tokenizer,
        data,
        output,
        SeracTrainSettings(**{**QUICK, **settings}),
        resolve_anatomy(model),
        progress=False,
        on_checkpoint=on_checkpoint,
    )


def test_a_short_run_writes_checkpoint_settings_and_validation(tiny_tokenizer, data_file, tmp_path):
    output = tmp_path / "run"
    report = train_scope(tiny_tokenizer, data_file, output)
    written = sorted(p.name for p in output.iterdir())
    assert written == sorted([SERAC_FILE, RUN_FILE, REPORT_FILE, FEATURES_FILE])
    run = json.loads((output / RUN_FILE).read_text())
    assert run["kind"] == "lm-edit train serac"
    assert run["classifier"]["layer"] == 0  # 15% of the tiny model's 4 blocks
    final = report["final"]
    assert final["step"] == 6 and final["cases"] == 2
    for key in ("in_scope", "out_of_scope", "edit_success", "generality", "locality"):
        assert final[key] is None or 0.0 <= final[key] <= 1.0, key
    assert [h["step"] for h in report["history"]] == [3, 6]


def test_the_batch_labels_rephrases_in_scope_and_the_rest_out(tiny_tokenizer, data_file):
    requests = load_edit_data(str(data_file)).requests
    cases = [
        EditCase(requests[0], ("Unrelated text is", "x")),
        EditCase(requests[1], ("Other", "y")),
    ]
    edits, queries, in_scope, counted = scope_batch(cases)
    assert edits == [requests[0].prompt, requests[1].prompt]
    paraphrase = queries.index(requests[0].rephrases[0])
    assert in_scope[paraphrase].tolist() == [True, False]
    assert not in_scope[queries.index("Unrelated text is")].any()
    assert counted[paraphrase].all() and not counted[queries.index(requests[0].prompt), 0]


def test_the_same_seed_gives_the_same_bytes_and_a_killed_run_resumes_to_them(
    tiny_tokenizer, data_file, tmp_path
):
    train_scope(tiny_tokenizer, data_file, tmp_path / "a", seed=3)
    train_scope(tiny_tokenizer, data_file, tmp_path / "b", seed=3)
    train_scope(tiny_tokenizer, data_file, tmp_path / "c", seed=4)
    expected = file_hash(tmp_path / "a" / SERAC_FILE)
    assert (
        expected == file_hash(tmp_path / "b" / SERAC_FILE) != file_hash(tmp_path / "c" / SERAC_FILE)
    )

    killed = tmp_path / "killed"

    def kill(step: int) -> None:
        raise Killed(step)

    with pytest.raises(Killed):
        train_scope(tiny_tokenizer, data_file, killed, on_checkpoint=kill, seed=3)
    assert torch.load(killed / SERAC_FILE, weights_only=True)["step"] == 2
    seen: list[int] = []
    train_scope(tiny_tokenizer, data_file, killed, on_checkpoint=seen.append, seed=3)
    assert seen == [4, 6] and file_hash(killed / SERAC_FILE) == expected
    with pytest.raises(OutputFolderError, match=r"another settings: lr: 0\.001 \(run\) vs 0\.002"):
        train_scope(tiny_tokenizer, data_file, killed, seed=3, lr=2e-3)

    corrupt = tmp_path / "corrupt"
    with pytest.raises(Killed):
        train_scope(tiny_tokenizer, data_file, corrupt, on_checkpoint=kill, seed=3)
    (corrupt / FEATURES_FILE).write_bytes(b"not a tensor file")
    train_scope(tiny_tokenizer, data_file, corrupt, seed=3)
    assert file_hash(corrupt / SERAC_FILE) == expected
    assert torch.load(corrupt / FEATURES_FILE, weights_only=True)["features"].shape[0] > 0


def test_a_mend_folder_is_not_taken_for_a_serac_run(tiny_tokenizer, data_file, tmp_path):
    mend = tmp_path / "mend"
    train_tiny(tiny_tokenizer, data_file, mend, steps=2)
    with pytest.raises(OutputFolderError, match=r"lm-edit train serac did not write \(mend\.pt\)"):
        train_scope(tiny_tokenizer, data_file, mend)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("serac")
    data = write_counterfact(folder.parent)
    train_scope(tiny_tokenizer, data, folder / "run")
    return folder / "run"


REQUESTS = [
    EditRequest("a", "The Eiffel Tower is located in", "The Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "Toyota is a car company from", "Toyota", "Germany", "Japan"),
]


def test_edits_route_their_prompts_and_undo_removes_the_memory(tiny_tokenizer, checkpoint):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stream = EditStream.create(
        model, tiny_tokenizer, "serac", editor_checkpoint=str(checkpoint), threshold=0.999
    )
    stream.apply(REQUESTS, batch_size=1, progress=False)
    for request in REQUESTS:
        asked = rewrite_prompt(model, request.prompt)
        assert asked.text == f"{request.prompt} {request.target_new} {request.prompt}"
        assert asked.added_tokens > 0
    unrelated = "A completely different question about music is"
    assert rewrite_prompt(model, unrelated).text == unrelated
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    stream.undo()
    assert not prompt_hooks(model)
    assert rewrite_prompt(model, REQUESTS[0].prompt).text == REQUESTS[0].prompt


def test_checkpoints_for_something_else_are_refused(tiny_tokenizer, checkpoint, tmp_path):
    other = make_tiny_model("gpt2", len(tiny_tokenizer))
    stream = EditStream.create(other, tiny_tokenizer, "serac", editor_checkpoint=str(checkpoint))
    with pytest.raises(CheckpointError, match="another base model: model_type is 'llama'"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    model = make_tiny_model("llama", len(tiny_tokenizer))
    for folder, message in (
        (None, "needs a trained scope classifier"),
        (str(tmp_path / "missing"), "is not a folder"),
        (str(tmp_path), "holds no serac.pt"),
    ):
        stream = EditStream.create(model, tiny_tokenizer, "serac", editor_checkpoint=folder)
        with pytest.raises((CheckpointError, ValueError), match=message):
            stream.apply(REQUESTS[:1], batch_size=1, progress=False)
    saved = torch.load(checkpoint / SERAC_FILE, weights_only=True)
    newer = tmp_path / "newer"
    newer.mkdir()
    torch.save({**saved, "format_version": 2}, newer / SERAC_FILE)
    stream = EditStream.create(model, tiny_tokenizer, "serac", editor_checkpoint=str(newer))
    with pytest.raises(CheckpointError, match="format version 2, but this lm-edit reads version 1"):
        stream.apply(REQUESTS[:1], batch_size=1, progress=False)


@pytest.mark.parametrize(
    "template", ["{prompt} {target}", "{query} {prompt}", "{subject} {query}", "newfact"]
)
def test_templates_that_do_not_end_in_the_query_are_refused(template):
    with pytest.raises(ValueError, match="must end with"):
        check_template(template)


def test_the_command_line_flags_match_the_settings():
    from dataclasses import fields

    assert list(_SERAC_FLAGS) == [f.name for f in fields(SeracTrainSettings)]


def test_train_serac_from_the_command_line(tiny_tokenizer, data_file, tmp_path, capsys):
    folder = tmp_path / "tiny-model"
    make_tiny_model("llama", len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    output = tmp_path / "run"
    argv = ["train", "serac", "--model_args", f"pretrained={folder}", "--train_data"]
    argv += [str(data_file), "--output", str(output), "--no_progress"]
    argv += [arg for k, v in QUICK.items() for arg in (f"--{k}", str(v))]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "SERAC scope classifier after 6 steps" in printed
        and "editor=serac,editor_checkpoint=" in printed
    )
    assert (output / SERAC_FILE).is_file()


@pytest.mark.slow
def test_edited_hf_answers_with_the_new_object_on_smollm2(tmp_path):
    """On SmolLM2 the counterfactual prompt (IKE's new-fact wording, which the frozen
    model follows better than the reference's bare one) makes the new object the greedy
    answer to most edits' prompts and raises its log-likelihood on every one."""
    from lm_eval.api.instance import Instance

    from lm_edit.core.record import temporarily_unedited
    from lm_edit.editors.learned.command import load_model
    from lm_edit.evaluation.model import EditedLM
    from lm_edit.offline_model import resolve_pretrained

    model_path = resolve_pretrained("smollm2-135m")
    folder = tmp_path / "serac"
    model, tokenizer = load_model({"pretrained": model_path})
    train_serac(
        model,
        tokenizer,
        load_edit_data("demo"),
        folder,
        SeracTrainSettings(steps=2, batch_size=2, val_every=2, val_cases=2),
        resolve_anatomy(model),
        progress=False,
    )
    lm = EditedLM(
        pretrained="smollm2-135m",
        device="cpu",
        editor="serac",
        editor_checkpoint=str(folder),
        template="new-fact",
        n_edits=4,
        edit_data="demo",
        individual_scores=False,
    )
    cases = lm.edit_session.requests
    until = {"until": ["\n", "."], "max_gen_toks": 4, "do_sample": False}
    asked = [Instance("generate_until", {}, (c.prompt, until), i) for i, c in enumerate(cases)]
    answers = lm.generate_until(asked, disable_tqdm=True)
    took = [a.strip().startswith(c.target_new) for a, c in zip(answers, cases, strict=True)]
    assert sum(took) >= 3, list(zip(answers, [c.target_new for c in cases], strict=True))
    pairs = [
        Instance("loglikelihood", {}, (c.prompt, " " + c.target_new), i)
        for i, c in enumerate(cases)
    ]
    after = [s for s, _ in lm.loglikelihood(pairs, disable_tqdm=True)]
    with temporarily_unedited(lm.model, lm.edit_stream.records):
        before = [s for s, _ in lm.loglikelihood(pairs, disable_tqdm=True)]
    assert all(a > b + 1.0 for a, b in zip(after, before, strict=True)), (after, before)
