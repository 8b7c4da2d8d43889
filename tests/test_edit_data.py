"""Portability, MQuAKE and free-generation data: loaders on fixtures written in the
published formats, clear errors naming the record, and the GE / RS metrics."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.data.requests import EditRequestError
from lm_edit.evaluation.docs import view_probes
from lm_edit.evaluation.fluency import (
    ReferenceData,
    generation_entropy,
    mean_per_case,
    ngram_entropy,
    reference_score,
)
from lm_edit.evaluation.fluency_task import fluency_docs, fluency_metrics
from lm_edit.evaluation.mquake_task import any_per_case, mquake_docs, mquake_metrics
from tests.test_datasets import SHARED_DATA, shared_data

FIXTURES = Path(__file__).parent / "fixtures"
PORTABILITY = FIXTURES / "portability"
REFERENCE = FIXTURES / "rome_reference"


def _write(tmp_path: Path, records: list) -> str:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return str(path)


# --- portability formats -------------------------------------------------------------


def test_counterfact_one_hop_portability():
    requests = load_edit_requests(str(PORTABILITY / "counterfact_portability_gpt4.json"))
    probe = requests[0].portability[0]
    assert (probe.answer, probe.category) == ("Finland", "one_hop")
    assert requests[0].extra["target_new_id"] == "Q1412"
    assert [p.prompt for p in view_probes("counterfact_portability", requests, None)] == [
        requests[0].portability[0].prompt,
        requests[1].portability[0].prompt,
    ]


def test_counterfact_subject_replace_fills_the_alternative_subject_in():
    (request,) = load_edit_requests(str(PORTABILITY / "counterfact_subject_replace.json"))
    (probe,) = request.portability
    assert probe.prompt == "The mother tongue of the Sofia-born novelist Velinova is"
    assert (probe.answer, probe.category) == ("Finnish", "subject_replace")


def test_zsre_subject_replace_and_inverse_relation():
    (replaced,) = load_edit_requests(str(PORTABILITY / "zsre_subject_replace.json"))
    assert [(p.answer, p.category) for p in replaced.portability] == [("Sweden", "subject_replace")]
    inverse = load_edit_requests(str(PORTABILITY / "zsre_inverse_relation.json"))
    assert [(p.answer, p.category) for p in inverse[0].portability] == [
        ("Lake Brennholt", "inverse_relation")
    ]
    assert inverse[1].portability == ()


def test_cases_without_the_probe_type_are_reported_not_scored(caplog):
    requests = load_edit_requests(str(PORTABILITY / "zsre_inverse_relation.json"))
    with caplog.at_level(logging.WARNING):
        items = view_probes("zsre_inverse_relation", requests, None)
    assert [i.case_id for i in items] == [requests[0].case_id]
    assert "1 of 2 cases have no portability probes of category inverse_relation" in caplog.text
    assert requests[1].case_id in caplog.text


def test_a_malformed_portability_probe_names_the_record(tmp_path):
    record = json.loads((PORTABILITY / "zsre_subject_replace.json").read_text())[0]
    bad = dict(record, portability={"New Answer": "Sweden"})
    with pytest.raises(EditRequestError, match=r"record 1 \(line \d+\).*portability\.prompt"):
        load_edit_requests(_write(tmp_path, [record, bad]))
    worse = dict(record, **{"inverse question": ["not", "a string"]})
    with pytest.raises(EditRequestError, match=r"record 0 .*inverse question"):
        load_edit_requests(_write(tmp_path, [worse]))


# --- MQuAKE ----------------------------------------------------------------------------


def test_mquake_cases_become_one_request_per_rewrite():
    requests = load_edit_requests(str(FIXTURES / "mquake.json"))
    assert [r.case_id for r in requests] == ["11/0", "11/1", "12/0", "12/1"]
    assert requests[1].prompt == "Madonna is a citizen of"
    assert requests[1].rephrases == ("What is the country of citizenship of Madonna?",)
    assert requests[0].extra["group"] == "11"


def test_selection_keeps_a_cases_rewrites_together(caplog):
    requests = load_edit_requests(str(FIXTURES / "mquake.json"))
    chosen = select_requests(requests, 2, seed=0)
    assert len({r.extra["group"] for r in chosen}) == 1 and len(chosen) == 2
    with caplog.at_level(logging.WARNING):
        assert len(select_requests(requests, 3, seed=0)) == 2
    assert "whole multi-edit cases give 2 edits" in caplog.text


def test_a_malformed_mquake_record_names_the_record_and_field(tmp_path):
    records = json.loads((FIXTURES / "mquake.json").read_text())
    del records[1]["questions"]
    with pytest.raises(EditRequestError, match=r"record 1 .*'questions'"):
        load_edit_requests(_write(tmp_path, records))
    records = json.loads((FIXTURES / "mquake.json").read_text())
    records[0]["requested_rewrite"][1]["prompt"] = "Madonna is a citizen of"
    with pytest.raises(EditRequestError, match=r"requested_rewrite\[1\].*'\{\}' once"):
        load_edit_requests(_write(tmp_path, records))


def test_mquake_scores_only_fully_edited_cases(caplog):
    requests = load_edit_requests(str(FIXTURES / "mquake.json"))
    with caplog.at_level(logging.WARNING):
        docs = mquake_docs(requests[:3])
    assert {d["case_id"] for d in docs} == {"11"} and len(docs) == 2
    assert "only partly edited" in caplog.text
    assert docs[0]["prompt"].startswith("Q: What is the country") and docs[0]["prompt"].endswith(
        "\nA:"
    )


def test_mquake_metrics_hand_checked():
    doc = mquake_docs(load_edit_requests(str(FIXTURES / "mquake.json")))[0]
    assert mquake_metrics(doc, [" Commonwealth of Australia."]) == {
        "multihop_new_gen": 1.0,
        "multihop_new_gen_contains": 1.0,
        "multihop_orig_gen_contains": 0.0,
        "multihop_case_new_gen_contains": ("11", 1.0),
    }
    old = mquake_metrics(doc, [" It is the UK"])
    assert old["multihop_new_gen"] == 0.0 and old["multihop_orig_gen_contains"] == 1.0
    assert any_per_case([("11", 0.0), ("11", 1.0), ("12", 0.0)]) == 0.5


# --- generation entropy and reference score ------------------------------------------


def test_ngram_entropy_hand_checked():
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("a b a b", 2) == pytest.approx(h2)
    assert ngram_entropy("a b a b", 3) == pytest.approx(1.0)
    assert generation_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert generation_entropy("a a a a a a") == 0.0
    assert generation_entropy("") == 0.0


def test_ge_averages_per_case_first():
    assert mean_per_case([("a", 1.0), ("a", 3.0), ("b", 4.0)]) == pytest.approx(3.0)


def test_reference_similarity_hand_checked():
    data = ReferenceData.load(REFERENCE)
    assert data.similarity("Paris, city!", "city French") == pytest.approx(
        4 / (math.sqrt(5) * math.sqrt(13))
    )
    assert data.similarity("nothing known", "city") == 0.0
    assert data.snippets[("P103", "Q1412")] == ["Finnish city", "french city"]


def test_reference_data_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="idf.npy"):
        ReferenceData.load(tmp_path)


def test_fluency_docs_and_rs_with_reference_data(caplog):
    requests = load_edit_requests(str(FIXTURES / "counterfact_rome.json"))
    docs = fluency_docs(requests[:1], {"reference_data": str(REFERENCE)})
    assert docs == [
        {
            "case_id": requests[0].case_id,
            "prompt": "Marta Velinova's first novel was written in",
            "reference_data": str(REFERENCE),
            "snippet_key": "P103|Q1412",
        }
    ]
    out = fluency_metrics(docs[0], [" the city of Paris"])
    case = requests[0].case_id
    assert out["ge"][0] == case
    snippets = "Finnish city french city"
    expected = ReferenceData.load(REFERENCE).similarity(" the city of Paris", snippets)
    assert reference_score([out["rs"]]) == pytest.approx(expected) and expected > 0


def test_rs_is_skipped_with_a_message_without_reference_data(caplog, monkeypatch):
    monkeypatch.delenv("LM_EDIT_REFERENCE_DATA", raising=False)
    requests = load_edit_requests(str(FIXTURES / "counterfact_rome.json"))
    with caplog.at_level(logging.WARNING):
        docs = fluency_docs(requests, {})
    assert "reference score (RS) skipped" in caplog.text
    assert "rs" not in fluency_metrics(docs[0], [" some text"])


# --- the real copies in ../shared/data (skipped when absent) ---------------------------


@shared_data
def test_real_zsre_one_hop_set_has_a_portability_probe_per_case():
    requests = load_edit_requests(str(SHARED_DATA / "portability/zsre_mend_edit.json"))
    assert len(requests) == 1037
    assert all([p.category for p in r.portability] == ["one_hop"] for r in requests)


@shared_data
def test_real_knowedit_wiki_counterfact_categories():
    path = SHARED_DATA / "knowedit/benchmark/wiki_counterfact/train_cf.json"
    requests = load_edit_requests(str(path))
    categories = {p.category for r in requests for p in (*r.portability, *r.locality)}
    assert categories == {
        "Reasoning",
        "Subject_Aliasing",
        "Logical_Generalization",
        "Relation_Specificity",
        "Forgetfulness",
    }


@shared_data
def test_real_mquake_hard_is_four_rewrites_per_case():
    requests = load_edit_requests(str(SHARED_DATA / "mquake/MQuAKE-hard.json"))
    assert len(requests) == 4 * 429
    assert len(mquake_docs(select_requests(requests, 20, seed=0))) == 5 * 3


def test_mquake_task_docs_come_from_the_session_or_say_why_not(caplog):
    from lm_edit.evaluation.mquake_task import build_mquake_docs
    from lm_edit.evaluation.session import EditSession, close_session, open_session

    requests = load_edit_requests(str(FIXTURES / "mquake.json"))
    for edited, cases in ((requests, {"11", "12"}), (requests[:1], {""})):
        open_session(EditSession(requests=edited, editor="none", edit_data="test"))
        try:
            docs = list(build_mquake_docs()["test"])
        finally:
            close_session()
        assert {d["case_id"] for d in docs} == cases
    assert mquake_metrics(docs[0], [" Australia"]) == {}
    assert "no fully edited MQuAKE case" in caplog.text
