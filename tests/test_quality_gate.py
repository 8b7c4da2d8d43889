"""The real-model quality gate, on data shipped with lm-edit so it always runs: ROME, MEMIT
and PMET (with its reference's argmax rule, which the tiny-model tests switch off) on
SmolLM2-135M-Instruct write five demo counterfacts sequentially (UltraEdit in one turn of
five), and the requested objects win over the true ones (``es_prob``) where the unedited
model's did not."""

from __future__ import annotations

import pytest

from lm_edit.paths import tasks_dir

GATE = {"n_edits": 5, "edit_data": "demo", "edit_seed": 0}


@pytest.fixture(scope="module")
def unedited_es() -> float:
    return _es_prob(editor="none")


def _es_prob(**model_args) -> float:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lm_edit.evaluation.model import EditedLM

    lm = EditedLM(pretrained="smollm2-135m", device="cpu", **GATE, **model_args)
    manager = TaskManager(include_path=str(tasks_dir()))
    results = simple_evaluate(model=lm, tasks=["counterfact_edit"], task_manager=manager)
    if model_args["editor"] != "none":
        batch = model_args.get("edit_batch_size", 1)
        assert len(lm.edit_stream.records) == -(-GATE["n_edits"] // batch)
    return results["results"]["counterfact_edit"]["es_prob,none"]


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["rome", "memit", "pmet"])
def test_real_edits_take_on_the_demo_cases(editor, unedited_es):
    assert unedited_es <= 0.2
    assert _es_prob(editor=editor) >= 0.9


@pytest.mark.slow
def test_an_ultraedit_turn_takes_on_the_demo_cases(unedited_es):
    """UltraEdit edits in turns: the five demo counterfacts as one turn, with the
    SmolLM2 family's step size."""
    assert unedited_es <= 0.2
    assert _es_prob(editor="ultraedit", edit_batch_size=5) >= 0.9
