"""The task YAMLs load through lm-eval, and the editing metrics score hand-made results."""

from __future__ import annotations

import pytest

from lm_edit.data.requests import EditRequest, Probe
from lm_edit.evaluation.docs import build_forced_docs, build_generation_docs
from lm_edit.evaluation.metrics import generation_metrics
from lm_edit.evaluation.session import EditSession, close_session, open_session
from lm_edit.paths import tasks_dir
from tests.edit_fakes import WordTokenizer

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
    assert {
        "zsre_edit",
        "zsre_edit_gen",
        "counterfact_edit",
        "counterfact_edit_gen",
        "zsre_portability",
        "knowedit_wiki_recent_gen",
        "edit_capability",
        "edit_capability_lite",
    } <= names
    assert len(paths) == len(names), "two YAMLs declare the same name"
    for path in paths:
        name = _declared_name(path)
        assert name in task_manager.all_tasks, f"{path} ({name}) did not load"


def test_editing_task_runs_under_a_session(task_manager):
    from lm_eval.tasks import get_task_dict

    session = EditSession(
        requests=[REQUEST], editor="none", edit_data="test", tokenizer=WordTokenizer()
    )
    open_session(session)
    try:
        tasks = get_task_dict(["counterfact_edit", "zsre_edit_gen"], task_manager)
        docs = list(tasks["counterfact_edit"].test_docs())
        assert [d["probe"] for d in docs] == [
            "reliability",
            "generality",
            "locality",
            "portability",
        ]
        assert len(docs[0]["requests"]) == 2  # " Rome" and " Paris", one token each
        assert len(list(tasks["zsre_edit_gen"].test_docs())) == 4
    finally:
        close_session()


def test_cases_come_from_metadata_without_a_session(tiny_tokenizer, monkeypatch):
    close_session()
    monkeypatch.setattr(
        "lm_edit.evaluation.docs.load_tokenizer", lambda metadata, session: tiny_tokenizer
    )
    docs = build_forced_docs(view="zsre_edit", edit_data="demo", n_edits=3, edit_seed=0)["test"]
    assert len({d["case_id"] for d in docs}) == 3
    gen = build_generation_docs(view="zsre_edit", edit_data="demo", n_edits=3)["test"]
    assert [d["case_id"] for d in gen] == [d["case_id"] for d in docs]


def test_teacher_forced_tasks_without_a_tokenizer_say_what_to_pass():
    close_session()
    with pytest.raises(ValueError, match="pretrained="):
        build_forced_docs(view="zsre_edit", edit_data="demo", n_edits=1)


def test_a_view_without_matching_probes_reports_nothing(caplog):
    open_session(EditSession(requests=[REQUEST], editor="none", edit_data="test"))
    try:
        docs = list(build_generation_docs(view="zsre_inverse_relation")["test"])
    finally:
        close_session()
    assert [d["probe"] for d in docs] == ["none"]
    assert generation_metrics(docs[0], [" anything"]) == {}
    assert "none of the 1 edited cases has portability probes" in caplog.text


def test_cases_lacking_a_probe_kind_are_named(caplog):
    bare = EditRequest("bare", "Alice works for", "Alice", "Acme", "Initech")
    open_session(EditSession(requests=[REQUEST, bare], editor="none", edit_data="test"))
    try:
        docs = list(build_generation_docs(view="zsre_edit")["test"])
    finally:
        close_session()
    assert [d["probe"] for d in docs if d["case_id"] == "bare"] == ["reliability"]
    assert "1 of 2 cases have no portability probes; portability metrics leave them out: bare" in (
        caplog.text
    )


def test_generation_tasks_generate_like_the_individual_scores():
    """Individual scores must be taken with the generation settings of the tasks."""
    import yaml

    from lm_edit.evaluation.individual import GEN_KWARGS

    text = (tasks_dir() / "_edit_gen_template_yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text.replace("!function ", ""))
    assert config["generation_kwargs"] == GEN_KWARGS


def test_score_cases_scores_the_first_edited_cases(tiny_tokenizer, monkeypatch):
    close_session()
    monkeypatch.setattr(
        "lm_edit.evaluation.docs.load_tokenizer", lambda metadata, session: tiny_tokenizer
    )
    every = build_forced_docs(view="zsre_edit", edit_data="demo", n_edits=5)["test"]
    order = list(dict.fromkeys(d["case_id"] for d in every))
    some = build_forced_docs(view="zsre_edit", edit_data="demo", n_edits=5, score_cases=2)
    assert list(dict.fromkeys(d["case_id"] for d in some["test"])) == order[:2]
    gen = build_generation_docs(view="zsre_edit", edit_data="demo", n_edits=5, score_cases=2)
    assert list(dict.fromkeys(d["case_id"] for d in gen["test"])) == order[:2]
    for bad in (0, "2", True, 1.5):
        with pytest.raises(ValueError, match="score_cases"):
            build_forced_docs(view="zsre_edit", edit_data="demo", n_edits=5, score_cases=bad)
