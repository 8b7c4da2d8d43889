"""edited-hf end to end on the real SmolLM2-135M-Instruct: the stock lm_eval CLI, the
quality gate on real CounterFact cases, and errors raised before the model loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lm_edit.paths import tasks_dir
from tests.conftest import shared_data_dir

LM_EVAL = Path(sys.executable).with_name("lm_eval")


def _evaluate(task_manager, tasks: list[str], **model_args):
    from lm_eval import simple_evaluate

    from lm_edit.evaluation.model import EditedLM

    lm = EditedLM(pretrained="smollm2-135m", device="cpu", **model_args)
    out = simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager)
    return lm, out["results"]


def _unedited_demo(**model_args):
    """edited-hf on SmolLM2 with ``editor=none`` over the demo cases."""
    from lm_edit.evaluation.model import EditedLM

    return EditedLM(
        pretrained="smollm2-135m", device="cpu", editor="none", edit_data="demo", **model_args
    )


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir()))


def test_n_edits_larger_than_the_data_fails_before_loading():
    from lm_edit.evaluation.model import EditedLM

    with pytest.raises(ValueError, match="n_edits=500"):
        EditedLM(pretrained="does-not-exist", editor="rome", n_edits=500, edit_data="demo")


def test_unknown_editor_fails_before_loading():
    from lm_edit.editors import UnknownEditorError
    from lm_edit.evaluation.model import EditedLM

    with pytest.raises(UnknownEditorError, match="Known editors"):
        EditedLM(pretrained="does-not-exist", editor="rom", n_edits=1)


@pytest.mark.slow
@pytest.mark.shared_data
def test_ten_sequential_rome_edits_on_counterfact(task_manager):
    data = shared_data_dir()
    if data is None:
        pytest.skip("../shared/data is not present")
    edit_data = str(data / "counterfact" / "counterfact-edit.json")
    common = {"n_edits": 10, "edit_data": edit_data, "edit_seed": 0}
    _, unedited = _evaluate(task_manager, ["counterfact_edit"], editor="none", **common)
    lm, edited = _evaluate(task_manager, ["counterfact_edit"], editor="rome", **common)
    before, after = unedited["counterfact_edit"], edited["counterfact_edit"]
    assert lm.edit_session.manifest()["case_ids"] == [r.case_id for r in lm.edit_session.requests]
    assert len(lm.edit_stream.records) == 10
    assert after["es_prob,none"] >= 0.9 > before["es_prob,none"]
    assert after["ns_prob,none"] >= before["ns_prob,none"] - 0.1


@pytest.mark.slow
def test_stock_lm_eval_cli_runs_the_demo(tmp_path):
    from lm_edit.offline_model import converted_model_dir
    from lm_edit.paths import cache_root

    converted_model_dir()
    stats_were_cached = any((cache_root() / "stats").glob("*/layer5-model-*.pt"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = "pretrained=smollm2-135m,editor=rome,n_edits=2,edit_data=demo"
    command = [
        str(LM_EVAL),
        "--model",
        "edited-hf",
        "--model_args",
        args,
        "--tasks",
        "counterfact_edit,zsre_edit",
        "--device",
        "cpu",
        "--output_path",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "es_prob" in done.stdout and "locality_tf_em_unedited" in done.stdout
    assert "Converting" not in done.stderr
    if stats_were_cached:
        assert not re.search(r"key statistics:\s+\d+%", done.stderr)
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    assert set(results["results"]) == {"counterfact_edit", "zsre_edit"}
    assert results["config"]["model_args"]["editor"] == "rome"


@pytest.mark.slow
def test_individual_scores_equal_sequential_ones_when_nothing_changes(task_manager):
    """With editor=none the model never changes, so scores taken after each (empty) edit
    batch and after the last one must agree exactly, in both protocols."""
    _, results = _evaluate(
        task_manager, ["zsre_edit", "zsre_edit_gen"], editor="none", n_edits=3, edit_data="demo"
    )
    forced, generated = results["zsre_edit"], results["zsre_edit_gen"]
    for name in ("reliability_tf", "reliability_tf_em", "generality_tf", "reliability_prob"):
        assert forced[f"{name}_individual,none"] == forced[f"{name},none"], name
    for name in ("reliability_gen", "generality_gen"):
        assert generated[f"{name}_individual,none"] == generated[f"{name},none"], name
    assert forced["locality_tf_unedited,none"] == 1.0
    assert forced["locality_tf_same_argmax,none"] == 1.0
    assert generated["locality_gen_unedited,none"] == 1.0


@pytest.mark.slow
def test_score_cases_scores_and_baselines_only_the_first_edited_cases(task_manager):
    """``score_cases=2`` of 4 edits: all 4 are applied; the unedited baselines, the
    individual scores and the task's documents cover the first 2 in edit order only."""
    from lm_eval import simple_evaluate

    lm = _unedited_demo(n_edits=4, score_cases=2)
    out = simple_evaluate(
        model=lm, tasks=["zsre_edit"], task_manager=task_manager, log_samples=True
    )
    session = lm.edit_session
    assert len(session.requests) == 4
    first = {r.case_id for r in session.requests[:2]}
    assert session.unedited_answers and {case for case, _ in session.unedited_answers} == first
    assert {case for case, _ in session.unedited_argmax} <= first
    assert set(session.individual) == first
    assert {s["doc"]["case_id"] for s in out["samples"]["zsre_edit"]} == first


def test_generation_batch_size_batches_generation_only():
    """``generation_batch_size`` sets the batch of generation requests; log-likelihood
    requests keep ``batch_size``, which is restored after each generation call."""
    from lm_eval.api.instance import Instance

    lm = _unedited_demo(n_edits=1, batch_size=1, generation_batch_size=3)
    generated_batches: list[int] = []
    forward_batches: list[int] = []
    generate, forward = lm.model.generate, lm.model.forward

    def counting_generate(*args, **kwargs):
        generated_batches.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    def counting_forward(input_ids, *args, **kwargs):
        forward_batches.append(input_ids.shape[0])
        return forward(input_ids, *args, **kwargs)

    lm.model.generate = counting_generate
    prompts = ["The capital of France is", "Two plus two is", "Water boils at", "The sky is"]
    until = {"until": ["\n"], "max_gen_toks": 3, "do_sample": False}
    answers = lm.generate_until(
        [Instance("generate_until", {}, (p, until), i) for i, p in enumerate(prompts)]
    )
    assert len(answers) == 4
    assert generated_batches == [3, 1]
    assert lm.batch_size == 1
    lm.model.forward = counting_forward
    lm.loglikelihood(
        [Instance("loglikelihood", {}, (p, " yes"), i) for i, p in enumerate(prompts[:2])]
    )
    assert forward_batches == [1, 1]


@pytest.mark.parametrize("value", [0, -2, "many"])
def test_generation_batch_size_must_be_a_positive_integer(value):
    from lm_edit.evaluation.model import EditedLM

    with pytest.raises(ValueError, match="generation_batch_size"):
        EditedLM(pretrained="does-not-exist", editor="none", generation_batch_size=value)


def test_results_config_records_the_resolved_edit_data():
    """lm-eval copies ``get_model_info()`` into the results' ``config``: the edit session's
    provenance names the resolved data file, its record count and content hash."""
    import json

    from lm_edit.evaluation.model import EditedLM

    lm = EditedLM(pretrained="smollm2-135m", device="cpu", editor="none", n_edits=1)
    info = json.loads(json.dumps(lm.get_model_info(), default=str))
    source = info["edit_session"]["data_source"]
    assert source["edit_data"] == "demo" and source["records"] == 52
    assert source["path"].endswith("demo_edits.jsonl") and len(source["content_sha256"]) == 64
    assert info["edit_session"]["editor"] == "none"
