"""Tests for lm_edit.data.loading: every supported format, detection, selection and errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from lm_edit.data import loading, sources
from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.data.requests import EditRequest, EditRequestError, Probe

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(
    os.environ.get("LM_EDIT_SHARED_DATA") or Path(__file__).parents[2] / "shared" / "data"
)


def shared_data(test: Any) -> Any:
    """Mark a test as needing ../shared/data and skip it when that folder is absent."""
    skip = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
    return pytest.mark.shared_data(skip(test))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load_fixture(name: str) -> list[EditRequest]:
    return load_edit_requests(str(FIXTURES / name))


def sourceless(requests: list[EditRequest]) -> list[EditRequest]:
    return [replace(request, source="") for request in requests]


@cache
def load_shared(relative: str) -> list[EditRequest]:
    return load_edit_requests(str(SHARED_DATA / relative))


def own_line(**fields: Any) -> str:
    record = {"prompt": "Paris is the capital of", "subject": "Paris", "target_new": "Italy"}
    return json.dumps({**record, **fields}) + "\n"


# --- formats -------------------------------------------------------------------------------


def test_own_jsonl_schema() -> None:
    first, second, third = load_fixture("own_edits.jsonl")
    assert first.case_id == "own-0"
    assert first.target_true == "Paris"
    assert first.rephrases == (
        "Tourists visit the Eiffel Tower in",
        "The Eiffel Tower can be found in",
    )
    assert first.locality == (Probe("The Colosseum stands in the city of", "Rome", "neighborhood"),)
    assert first.portability == (
        Probe("The Eiffel Tower is in the country of", "Italy", "one_hop", ("Italia",)),
    )
    assert first.extra == {"note": "hand-written", "format": "own"}
    assert first.source.endswith("own_edits.jsonl:line 1")
    assert second.case_id == "own_edits-1"
    assert second.source.endswith("own_edits.jsonl:line 3")  # line 2 is blank
    assert second.locality[0].aliases == ("ag",)
    assert third.extra["source"] == "notebook"


def test_own_schema_round_trips_to_dict(tmp_path: Path) -> None:
    requests = load_fixture("own_edits.jsonl")
    lines = []
    for request in requests:
        data = request.to_dict()
        data.pop("source")
        lines.append(json.dumps(data))
    path = write(tmp_path / "dumped.jsonl", "\n".join(lines))
    assert sourceless(load_edit_requests(str(path))) == sourceless(requests)


def test_zsre_mend_format() -> None:
    first, second = load_fixture("zsre_mend.json")
    assert first.prompt == "Which country is Lake Brennholt located in?"
    assert first.target_new == "Sweden"  # stripped
    assert first.target_true == "Norway"
    assert first.extra["target_true_aliases"] == ["Kingdom of Norway"]
    assert first.rephrases == ("In which country would you find Lake Brennholt?",)
    assert first.locality == (
        Probe("nq question: who painted the ceiling of the sistine chapel", "Michelangelo", "NQ"),
    )
    assert first.portability == (
        Probe(
            "What is the capital of the country Lake Brennholt is located in?",
            "Stockholm",
            "one_hop",
        ),
    )
    assert first.extra["recalled_relation"] == "(Sweden, capital, Stockholm)"
    assert first.extra["pred"] == "Norway"
    assert first.extra["cond"].startswith("Norway >> Sweden")
    assert first.case_id == "zsre_mend-0"
    assert second.portability == ()


def test_counterfact_rome_format() -> None:
    first, second = load_fixture("counterfact_rome.json")
    assert first.case_id == "41"
    assert first.prompt == "The mother tongue of Marta Velinova is"
    assert first.template == "The mother tongue of {} is"
    assert (first.target_new, first.target_true) == ("Finnish", "Bulgarian")
    assert len(first.rephrases) == 2
    assert first.locality == (
        Probe("The mother tongue of Ivan Dobrev is", "Bulgarian", "neighborhood"),
        Probe("Petar Kolev, a native speaker of", "Bulgarian", "neighborhood"),
    )
    assert first.extra["attribute_prompts"] == ["The mother tongue of Aino Laine is"]
    assert first.extra["generation_prompts"] == ["Marta Velinova's first novel was written in"]
    assert first.extra["relation_id"] == "P103"
    assert first.extra["pararel_idx"] == 512
    assert second.prompt == "Harbor Lantern Works is headquartered in"


def test_easyedit_flat_counterfact() -> None:
    requests = load_fixture("easyedit_counterfact.json")
    assert [r.case_id for r in requests] == ["900", "901", "902"]
    first = requests[0]
    assert first.target_true == "Dutch"
    assert first.rephrases == ("People in Veldmark mostly speak",)
    assert first.locality == (
        Probe("The official language of Belgium is", "Dutch", "neighborhood"),
    )
    assert first.source.endswith("easyedit_counterfact.json:record 0 (line 2)")


def test_easyedit_flat_zsre() -> None:
    first, second = load_fixture("easyedit_zsre.json")
    assert first.case_id == "easyedit_zsre-0"
    assert first.target_true == "Grey River"
    assert first.extra["target_true_aliases"] == ["the Grey"]
    assert first.locality[0].category == "NQ"
    assert first.portability == (
        Probe(
            "Which sea does the river that Tallow Creek flows into empty into?",
            "Amber Sea",
            "portability",
        ),
    )
    assert second.portability == ()


def test_knowedit_format(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lm_edit.data.loading")
    zsre, recent, empty_truth = load_fixture("knowedit.json")
    assert zsre.target_true == "Norway"
    assert zsre.rephrases == ("Brennholt Fjord is part of which country?",)
    assert [p.category for p in zsre.portability] == ["Reasoning", "Subject_Aliasing"]
    assert zsre.locality == (
        Probe("The length of Brennholt Fjord is", "12 km", "Relation_Specificity"),
    )
    assert recent.target_true is None
    citizenship, siblings, gender = recent.locality
    assert (citizenship.answer, citizenship.aliases) == (
        "Soviet Union",
        ("USSR", "the Soviet Union"),
    )
    assert (siblings.answer, siblings.aliases) == ("Anna Kalnina", ("Anna K.", "Peteris Kalnins"))
    assert gender.category == "Forgetfulness"
    assert empty_truth.target_true is None
    assert "The name of the father of Ilze Kalnina is' has no answer" in caplog.text
    assert "'ground_truth' is empty" in caplog.text


@pytest.mark.parametrize(
    ("name", "label", "count"),
    [
        ("own_edits.jsonl", "lm_edit JSON schema", 3),
        ("zsre_mend.json", "ZsRE (MEND format)", 2),
        ("counterfact_rome.json", "CounterFact (ROME format)", 2),
        ("easyedit_counterfact.json", "CounterFact (EasyEdit flat format)", 3),
        ("easyedit_zsre.json", "ZsRE (EasyEdit flat format)", 2),
        ("knowedit.json", "KnowEdit", 3),
    ],
)
def test_detection_is_logged(
    name: str, label: str, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lm_edit.data.loading")
    load_fixture(name)
    assert f"{name}: detected {label}, {count} records" in caplog.text


def test_json_list_and_jsonl_give_the_same_requests(tmp_path: Path) -> None:
    records = json.loads((FIXTURES / "easyedit_counterfact.json").read_text())
    path = write(
        tmp_path / "easyedit_counterfact.jsonl", "".join(json.dumps(r) + "\n" for r in records)
    )
    from_jsonl = load_edit_requests(str(path))
    assert sourceless(from_jsonl) == sourceless(load_fixture("easyedit_counterfact.json"))
    assert from_jsonl[1].source.endswith("easyedit_counterfact.jsonl:line 2")


# --- selection -----------------------------------------------------------------------------


def test_select_requests_is_deterministic() -> None:
    requests = load_fixture("easyedit_counterfact.json") + load_fixture("counterfact_rome.json")
    first = select_requests(requests, 3, seed=7)
    assert first == select_requests(requests, 3, seed=7)
    assert len(first) == 3
    assert len({r.case_id for r in first}) == 3
    orders = {tuple(r.case_id for r in select_requests(requests, None, s)) for s in range(20)}
    assert len(orders) > 1
    assert sorted(r.case_id for r in select_requests(requests, None, seed=0)) == sorted(
        r.case_id for r in requests
    )


def test_select_requests_errors() -> None:
    requests = load_fixture("zsre_mend.json")
    with pytest.raises(ValueError, match=r"n_edits=5 but the edit data has only 2 records"):
        select_requests(requests, 5, seed=0)
    with pytest.raises(ValueError, match=r"n_edits must be >= 1"):
        select_requests(requests, 0, seed=0)
    with pytest.raises(ValueError, match=r"edit data is empty"):
        select_requests([], None, seed=0)


# --- errors --------------------------------------------------------------------------------


def test_jsonl_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", own_line() + own_line(target_new="") + own_line())
    with pytest.raises(EditRequestError, match=r"bad\.jsonl:line 2: field 'target_new'"):
        load_edit_requests(str(path))


def test_json_list_bad_field_names_record_and_line(tmp_path: Path) -> None:
    records = json.loads((FIXTURES / "easyedit_counterfact.json").read_text())
    records[2]["locality_prompt"] = 17
    text = json.dumps(records, indent=2)
    path = write(tmp_path / "bad.json", text)
    line = [i for i, row in enumerate(text.split("\n"), start=1) if row == "  {"][2]
    with pytest.raises(EditRequestError) as info:
        load_edit_requests(str(path))
    assert f"bad.json:record 2 (line {line}): field 'locality.prompt'" in str(info.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.json", '[\n  {"prompt": "a"},\n  {"prompt": }\n]\n')
    with pytest.raises(EditRequestError, match=r"broken\.json:line 3: invalid JSON"):
        load_edit_requests(str(path))
    path = write(tmp_path / "broken.jsonl", own_line() + '{"prompt": \n')
    with pytest.raises(EditRequestError, match=r"broken\.jsonl:line 2: invalid JSON"):
        load_edit_requests(str(path))


def test_json_object_instead_of_list_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path / "object.json", own_line())
    with pytest.raises(EditRequestError, match=r"expected a JSON list of records"):
        load_edit_requests(str(path))


def test_subject_not_in_prompt_names_file_and_record(tmp_path: Path) -> None:
    path = write(tmp_path / "subject.jsonl", own_line() + own_line(subject="Rome"))
    with pytest.raises(EditRequestError) as info:
        load_edit_requests(str(path))
    message = str(info.value)
    assert "case 'subject-1'" in message
    assert "subject.jsonl:line 2" in message
    assert "subject 'Rome' does not occur in prompt" in message


def test_all_invalid_records_are_listed_and_can_be_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = own_line(subject="Rome") + own_line() + own_line(prompt=None) + "[1, 2]\n"
    path = write(tmp_path / "mixed.jsonl", text)
    with pytest.raises(EditRequestError) as info:
        load_edit_requests(str(path))
    message = str(info.value)
    assert "3 of 4 records are invalid" in message
    for line in (1, 3, 4):
        assert f"mixed.jsonl:line {line}" in message
    assert "skip_invalid=True" in message
    caplog.set_level(logging.WARNING, logger="lm_edit.data.loading")
    kept = load_edit_requests(str(path), skip_invalid=True)
    assert [r.source.rsplit(":", 1)[1] for r in kept] == ["line 2"]
    assert "skipped 3 of 4 records" in caplog.text


def test_duplicate_case_ids_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.jsonl", own_line(case_id=3) + own_line(case_id="3"))
    with pytest.raises(EditRequestError, match=r"case_id '3' is also used by .*dup\.jsonl:line 1"):
        load_edit_requests(str(path))


def test_unknown_format_lists_keys_and_formats(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.jsonl", json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(EditRequestError) as info:
        load_edit_requests(str(path))
    message = str(info.value)
    assert "unknown edit-data format" in message
    assert "['answer', 'question']" in message
    for name in ("ZsRE MEND", "CounterFact ROME", "EasyEdit flat", "KnowEdit", "lm_edit JSON"):
        assert name in message


def test_wikibio_passage_is_the_prompt_and_the_corrected_sentence_the_target() -> None:
    (request,) = load_fixture("wikibio.json")
    assert request.prompt.startswith("This is a Wikipedia passage about jan novak.")
    assert (request.subject, request.target_new) == ("jan novak", "He studied chemistry in Brno.")
    assert [(p.answer, p.category) for p in request.locality] == [
        ("chemist", "Relation_Specificity")
    ]
    assert request.extra["format"] == "wikibio"


def test_empty_data_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(EditRequestError, match=r"holds no records"):
        load_edit_requests(str(write(tmp_path / "empty.json", "[]")))


def test_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        load_edit_requests(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"not a file"):
        load_edit_requests(str(tmp_path))
    with pytest.raises(ValueError, match=r"neither a built-in name \(demo, counterfact"):
        load_edit_requests("no such data")
    with pytest.raises(ValueError, match=r"split='test' applies to Hub datasets only"):
        load_edit_requests(str(FIXTURES / "zsre_mend.json"), split="test")


# --- built-in names and the Hub ------------------------------------------------------------


def test_demo_resolves_to_the_packaged_file(monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = Path(loading.__file__).parent / "demo_edits.jsonl"
    assert packaged == sources.DEMO_PATH
    monkeypatch.setattr(sources, "DEMO_PATH", FIXTURES / "own_edits.jsonl")
    assert len(load_edit_requests("demo")) == 3


def test_data_dir_env_serves_builtin_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "counterfact" / "counterfact-edit.json"
    local.parent.mkdir()
    shutil.copy(FIXTURES / "easyedit_counterfact.json", local)
    monkeypatch.setenv("LM_EDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(loading, "read_hub", pytest.fail)
    caplog.set_level(logging.INFO, logger="lm_edit.data.loading")
    assert [r.case_id for r in load_edit_requests("counterfact")] == ["900", "901", "902"]
    assert "edit_data=counterfact: detected CounterFact (EasyEdit flat format), 3" in caplog.text


class FakeHub:
    """Stands in for ``datasets.load_dataset``, serving a local file through Arrow."""

    def __init__(self, fixture: str, cache_dir: Path) -> None:
        import datasets

        self.real_load = datasets.load_dataset
        self.fixture, self.cache_dir = fixture, cache_dir
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: str, **kwargs: Any) -> Any:
        self.calls.append((path, kwargs))
        data_files = str(FIXTURES / self.fixture)
        return self.real_load(
            "json", data_files=data_files, split="train", cache_dir=self.cache_dir
        )


@pytest.mark.parametrize(
    ("spec", "fixture", "expected_kwargs"),
    [
        ("knowedit", "knowedit.json", {"data_files": "benchmark/ZsRE/ZsRE-test-all.json"}),
        ("azhx/counterfact", "counterfact_rome.json", {"split": None}),
        (
            "knowedit_wiki_counterfact",
            "knowedit.json",
            {"data_files": "benchmark/wiki_counterfact/test_cf.json"},
        ),
        ("org/own-edits", "own_edits.jsonl", {"split": None}),
    ],
)
def test_hub_records_match_local_ones(
    spec: str,
    fixture: str,
    expected_kwargs: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    monkeypatch.delenv("LM_EDIT_DATA_DIR", raising=False)
    fake = FakeHub(fixture, tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    from_hub = load_edit_requests(spec)
    local = load_fixture(fixture)
    hub_id, kwargs = fake.calls[0]
    assert kwargs.items() >= expected_kwargs.items()
    assert [r.case_id.rsplit("-", 1)[-1] for r in from_hub] == [
        r.case_id.rsplit("-", 1)[-1] for r in local
    ]
    for hub_request, local_request in zip(from_hub, local, strict=True):
        assert hub_request.locality == local_request.locality
        assert hub_request.portability == local_request.portability
        assert hub_request.target_true == local_request.target_true
        assert hub_request.source.startswith(f"{hub_id}[")


def test_hub_unreachable_names_the_offline_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'azhx/counterfact' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("LM_EDIT_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"Pass a local path instead") as info:
        load_edit_requests("knowedit")
    assert "LM_EDIT_DATA_DIR" in str(info.value)


@pytest.mark.parametrize(
    ("name", "nearest"), [("counterfact", "azhx/counterfact"), ("zsre", "edit_data=knowedit")]
)
def test_a_name_is_never_replaced_by_a_different_hub_dataset(
    name: str, nearest: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import datasets

    def must_not_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a different dataset was loaded")

    monkeypatch.setenv("LM_EDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "load_dataset", must_not_load)
    with pytest.raises(FileNotFoundError, match="has no Hub copy") as info:
        load_edit_requests(name)
    assert nearest in str(info.value) and "LM_EDIT_DATA_DIR" in str(info.value)


def test_loaded_data_records_its_resolved_source(tmp_path: Path) -> None:
    from lm_edit.data.loading import load_edit_data

    path = tmp_path / "edits.jsonl"
    path.write_bytes((FIXTURES / "own_edits.jsonl").read_bytes())
    first = load_edit_data(str(path))
    assert first.source["path"] == str(path.resolve())
    assert first.source["records"] == len(first.requests) > 0
    path.write_text(path.read_text().replace("Paris", "Lyon", 1))
    second = load_edit_data(str(path))
    assert second.source["content_sha256"] != first.source["content_sha256"]
    assert second.source["file_sha256"] != first.source["file_sha256"]
    demo = load_edit_data("demo").source
    assert demo["records"] == 52 and demo["edit_data"] == "demo"


def test_knowedit_split_must_name_a_benchmark_file() -> None:
    with pytest.raises(ValueError, match=r"not a KnowEdit benchmark file; choose one of"):
        load_edit_requests("zjunlp/KnowEdit", split="WikiBio")


def test_hub_dataset_with_several_splits_needs_a_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    parts = {
        "train": datasets.Dataset.from_list([{"x": 1}]),
        "test": datasets.Dataset.from_list([{"x": 2}]),
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(parts))
    with pytest.raises(ValueError, match=r"has splits \['test', 'train'\]; pass split="):
        load_edit_requests("org/two-splits")


# --- the real data in ../shared/data -------------------------------------------------------


@shared_data
@pytest.mark.parametrize(
    ("relative", "label", "count"),
    [
        ("counterfact/counterfact-edit.json", "CounterFact (EasyEdit flat format)", 10_000),
        ("portability/zsre_mend_edit.json", "ZsRE (MEND format)", 1_037),
        ("knowedit/benchmark/wiki_counterfact/train_cf.json", "KnowEdit", 1_428),
        ("knowedit/benchmark/wiki_recent/recent_train.json", "KnowEdit", 570),
    ],
)
def test_real_files_load(
    relative: str, label: str, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lm_edit.data.loading")
    requests = load_shared(relative)
    assert len(requests) == count
    assert len({r.case_id for r in requests}) == count
    assert f"detected {label}, {count} records" in caplog.text


@shared_data
def test_real_counterfact_keeps_case_ids() -> None:
    first = load_shared("counterfact/counterfact-edit.json")[0]
    assert (first.case_id, first.subject, first.target_true) == ("0", "Danielle Darrieux", "French")
    assert first.locality[0].category == "neighborhood"


@shared_data
def test_real_knowedit_probe_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lm_edit.data.loading")
    recent = load_edit_requests(
        str(SHARED_DATA / "knowedit/benchmark/wiki_recent/recent_train.json")
    )
    assert sum(len(r.locality) for r in recent) == 1946 - 7
    assert sum(len(r.portability) for r in recent) == 751
    assert "7 value(s) left out" in caplog.text
    assert all(r.target_true is None for r in recent)


@shared_data
def test_real_knowedit_zsre_has_three_subject_mismatches() -> None:
    path = SHARED_DATA / "knowedit/benchmark/ZsRE/ZsRE-test-all.json"
    with pytest.raises(EditRequestError) as info:
        load_edit_requests(str(path))
    message = str(info.value)
    assert "3 of 1304 records are invalid" in message
    for record in (396, 597, 676):
        assert f"record {record} (line" in message
    requests = load_edit_requests(str(path), skip_invalid=True)
    assert len(requests) == 1301
    assert sum(len(r.portability) for r in requests) == 1304 - 3


@shared_data
def test_real_wikibio_loads() -> None:
    path = SHARED_DATA / "knowedit/benchmark/WikiBio/wikibio-test-all.json"
    requests = load_edit_requests(str(path))
    assert len(requests) == 306 and all(r.locality for r in requests)


@shared_data
def test_builtin_names_resolve_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    read_local = loading.read_local
    opened: list[Path] = []

    def spy(path: Path) -> list[tuple[str, Any]]:
        opened.append(path)
        return read_local(FIXTURES / "easyedit_counterfact.json")

    monkeypatch.setenv("LM_EDIT_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setattr(loading, "read_hub", pytest.fail)
    monkeypatch.setattr(loading, "read_local", spy)
    present = [
        n for n in sources.BUILTIN_LOCAL if (SHARED_DATA / sources.BUILTIN_LOCAL[n]).is_file()
    ]
    # ../shared/data holds every file except KnowEdit's two test splits, which the Hub has
    assert set(sources.BUILTIN_LOCAL) - set(present) <= {
        "knowedit_wiki_counterfact",
        "knowedit_wiki_recent",
    }
    for name in present:
        load_edit_requests(name)
    assert opened == [SHARED_DATA / sources.BUILTIN_LOCAL[name] for name in present]
