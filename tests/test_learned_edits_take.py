"""Training is what makes a learned editor's edits take: after a short run on the six
tiny CounterFact cases, each training case edited alone (through ``EditStream``, with the
checkpoint loaded by path) gets its new object as the model's answer; after one step of
training, fewer do."""

from __future__ import annotations

import pytest

from lm_edit.data.loading import load_edit_requests
from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.training import split_cases
from lm_edit.stream import EditStream
from tests.conftest import make_tiny_model
from tests.mend_fixtures import train_tiny, train_tiny_ke, write_counterfact
from tests.test_editor_lifecycle import _first_token, _logits

TRAINERS = {"mend": (train_tiny, 60), "ke": (train_tiny_ke, 100)}
"""Each learned editor's trainer and the steps after which its training cases take."""


def _answer(model, tokenizer, prompt: str) -> int:
    return int(_logits(model, tokenizer, prompt).argmax())


def _cases_that_take(name: str, tokenizer, checkpoint, requests: list[EditRequest]) -> set:
    """The requests whose new object's first token is the answer after editing a fresh
    tiny Llama with that request alone."""
    taken = set()
    for request in requests:
        model = make_tiny_model("llama", len(tokenizer))
        new_token = _first_token(tokenizer, request.target_new)
        assert _answer(model, tokenizer, request.prompt) != new_token, request.case_id
        stream = EditStream.create(model, tokenizer, name, editor_checkpoint=str(checkpoint))
        stream.apply([request], progress=False)
        if _answer(model, tokenizer, request.prompt) == new_token:
            taken.add(request.case_id)
    return taken


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_a_trained_network_makes_its_training_cases_edits_take(name, tiny_tokenizer, tmp_path):
    data = write_counterfact(tmp_path)
    trainer, steps = TRAINERS[name]
    requests = load_edit_requests(str(data))
    training, _ = split_cases(requests, val_cases=1, seed=0)
    taken = {}
    for run_steps in (1, steps):
        folder = tmp_path / f"{name}-{run_steps}"
        run = {"steps": run_steps, "val_every": run_steps, "checkpoint_every": run_steps}
        trainer(tiny_tokenizer, data, folder, val_cases=1, locality_positions="all", **run)
        taken[run_steps] = _cases_that_take(name, tiny_tokenizer, folder, training)
    assert taken[steps] == {request.case_id for request in training}
    assert len(taken[1]) < len(training)
