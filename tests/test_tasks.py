"""The task YAMLs load through lm-eval, and the editing metrics score hand-made results."""

from __future__ import annotations

import math

import pytest

from lm_edit.paths import tasks_dir
from lm_edit.requests import EditRequest, Probe
from lm_edit.session import EditSession, close_session, open_session
from lm_edit.tasks_support import (
    build_docs,
    case_docs,
    counterfact_metrics,
    harmonic_score,
    zsre_metrics,
)

REQUEST = EditRequest(
    "c1",
    "The Eiffel Tower is located in the city of",
    "The Eiffel Tower",
    "Rome",
    "Paris",
    rephrases=("Where is the Eiffel Tower? In the city of",),
    locality=(Probe("The Louvre is located in the city of", "Paris"),),
    portability=(Probe("The Eiffel Tower's country's capital is", "Rome"),),
)


def _declared_name(path) -> str:
    """The task or group name a YAML declares (``!function`` tags read as text)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506
    return config.get("group") or config["task"]


def test_every_task_yaml_loads(task_manager):
    paths = sorted(tasks_dir().rglob("*.yaml"))
    names = {_declared_name(p) for p in paths}
    assert {"zsre_edit", "counterfact_edit", "edit_capability", "edit_capability_lite"} <= names
    assert len(paths) == len(names), "two YAMLs declare the same name"
    for path in paths:
        name = _declared_name(path)
        assert name in task_manager.all_tasks, f"{path} ({name}) did not load"


def test_editing_task_runs_under_a_session(task_manager):
    from lm_eval.tasks import get_task_dict

    open_session(EditSession(requests=[REQUEST], editor="none", edit_data="test"))
    try:
        tasks = get_task_dict(["counterfact_edit", "zsre_edit"], task_manager)
        docs = list(tasks["counterfact_edit"].test_docs())
        assert [d["probe"] for d in docs] == [
            "reliability",
            "generality",
            "locality",
            "portability",
        ]
    finally:
        close_session()


def test_docs_carry_choices_with_a_leading_space():
    docs = case_docs(REQUEST, {("c1", 0): " Paris, France"})
    reliability, generality, locality, portability = docs
    assert reliability["choices"] == [" Rome", " Paris"] and reliability["slots"] == ["new", "true"]
    assert generality["prompt"] == REQUEST.rephrases[0]
    assert locality["slots"] == ["gold", "new", "unedited"]
    assert locality["choices"] == [" Paris", " Rome", " Paris, France"]
    assert portability["choices"] == [" Rome"]


def test_cases_come_from_metadata_without_a_session():
    close_session()
    docs = build_docs(edit_data="demo", n_edits=3, edit_seed=0)["test"]
    assert len({d["case_id"] for d in docs}) == 3


def test_counterfact_metrics_hand_checked():
    doc = case_docs(REQUEST, None)[0]
    out = counterfact_metrics(doc, [(-1.0, True), (-3.0, False)])
    assert out["es_prob"] == 1.0
    assert out["em_prob"] == pytest.approx(math.exp(-1) - math.exp(-3))
    assert out["reliability_tf_em"] == 1.0
    locality = case_docs(REQUEST, None)[2]
    out = counterfact_metrics(locality, [(-2.0, True), (-0.5, False)])
    assert out["ns_prob"] == 0.0 and out["nm_prob"] == pytest.approx(math.exp(-2) - math.exp(-0.5))


def test_zsre_metrics_hand_checked():
    docs = case_docs(REQUEST, {("c1", 0): " Paris"})
    assert zsre_metrics(docs[0], [(-1.0, False), (-0.5, True)]) == {
        "reliability_tf_em": 0.0,
        "reliability_prob": 0.0,
    }
    assert zsre_metrics(docs[2], [(-1.0, True), (-3.0, False), (-1.0, False)]) == {
        "locality_tf_em_gold": 1.0,
        "locality_tf_em_unedited": 0.0,
    }
    assert zsre_metrics(docs[3], [(-1.0, True)]) == {"portability_tf_em": 1.0}


def test_counterfact_needs_target_true():
    request = EditRequest("n", "Alice works for", "Alice", "Acme")
    with pytest.raises(ValueError, match="'n' has no target_true"):
        counterfact_metrics(case_docs(request, None)[0], [(-1.0, True)])


def test_harmonic_score():
    items = [("es", 1.0), ("es", 1.0), ("ps", 0.5), ("ps", 0.5), ("ns", 1.0)]
    assert harmonic_score(items) == pytest.approx(3 / (1 + 2 + 1))
    assert harmonic_score([("es", 1.0), ("ns", 0.0)]) == 0.0
