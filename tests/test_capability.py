"""The capability suite: offline data, scorers on known answers, the code sandbox, the lite
subsample and the dependency message."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from lm_edit.studies.capability import axb, c3, commonsense_qa, lite, mbpp, minerva, offline
from lm_edit.studies.capability.choices import first_option_letter
from lm_edit.studies.capability.sandbox import run_program
from tests.conftest import shared_data_dir

FIXTURES = Path(__file__).parent / "fixtures" / "capability"


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    """An empty datasets cache under ``tmp_path``, used by ``load_dataset`` with the Hub off."""
    import datasets.config

    cache = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize(
    ("generation", "n", "expected"),
    [
        ("A", 4, "A"),
        (" B. 孩子", 3, "B"),
        ("答：C", 4, "C"),
        ("The answer is D.", 4, "D"),
        ("(B) because", 2, "B"),
        ("Because it is", 4, None),  # letters inside words do not count
        ("E", 4, None),  # not one of the four options
        ("", 2, None),
    ],
)
def test_first_option_letter(generation, n, expected):
    assert first_option_letter(generation, n) == expected


def test_offline_cache_round_trip(offline_datasets):
    import datasets

    report = offline.build_offline_cache(FIXTURES, ["axb", "tydiqa"])
    assert set(report) == {"axb", "tydiqa"}
    rows = datasets.load_dataset("aps/super_glue", "axb")["test"]
    assert len(rows) == 6
    assert rows.features["label"].names == ["entailment", "not_entailment"]
    assert rows[0]["sentence2"] == "A cat was sitting." and rows[0]["label"] == 0
    tydiqa = datasets.load_dataset("google-research-datasets/tydiqa", "secondary_task")
    assert len(tydiqa["validation"]) == 10 and len(tydiqa["train"]) == 1
    first = tydiqa["validation"][0]
    assert first["answers"] == {"text": ["100 degrees Celsius"], "answer_start": [15]}
    again = offline.build_offline_cache(FIXTURES, ["axb"])
    assert again["axb"] == report["axb"]  # same content: the folder is reused


def test_offline_cache_leaves_foreign_copies_alone(offline_datasets, tmp_path):
    hub_copy = offline_datasets / "aps___super_glue" / "axb" / "0.0.0" / "from-the-hub"
    hub_copy.mkdir(parents=True)
    (hub_copy / "dataset_info.json").write_text('{"description": "downloaded"}')
    offline.build_offline_cache(FIXTURES, ["axb"])
    assert (hub_copy / "dataset_info.json").exists()
    edited = tmp_path / "edited"
    shutil.copytree(FIXTURES / "axb", edited / "axb")
    lines = (edited / "axb" / "AX-b.jsonl").read_text().splitlines()
    (edited / "axb" / "AX-b.jsonl").write_text("\n".join(lines[:3]) + "\n")
    [rebuilt] = offline.build_offline_cache(edited, ["axb"])["axb"]
    folders = sorted(p.name for p in rebuilt.parent.iterdir())
    assert folders == sorted(["from-the-hub", rebuilt.name])  # the old lm-edit build is gone


def test_offline_cache_interrupted_build_leaves_nothing(offline_datasets, monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "from_list", broken)
    with pytest.raises(OSError, match="disk full"):
        offline.build_offline_cache(FIXTURES, ["axb"])
    leftovers = [p for p in offline_datasets.rglob("*") if p.is_file()]
    assert leftovers == []
    assert not any(p.name.startswith(".lm-edit-") for p in offline_datasets.rglob("*"))


def test_offline_cache_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="Unknown benchmark"):
        offline.build_offline_cache(FIXTURES, ["squad"], tmp_path)
    with pytest.raises(FileNotFoundError, match="mmlu: no local copy"):
        offline.build_offline_cache(FIXTURES, ["mmlu"], tmp_path)
    report = offline.build_offline_cache(FIXTURES, None, tmp_path)
    assert report["mmlu"].startswith("skipped: no local copy")


def _c3_dataset():
    import datasets

    row = {
        "documents": ["男：你好。", "女：你好，请问去车站怎么走？"],
        "document_id": "t-1",
        "questions": {
            "question": ["女的要去哪里？", "他们在做什么？"],
            "answer": ["车站", "问路"],
            "choice": [["学校", "车站", "医院", "商店"], ["问路", "吃饭"]],
        },
    }
    return datasets.Dataset.from_list([row])


def test_c3_docs_and_scoring():
    docs = list(c3.process_docs(_c3_dataset()))
    assert [d["id"] for d in docs] == ["t-1#0", "t-1#1"]
    assert docs[0]["label"] == 1 and docs[1]["label"] == 0
    prompt = c3.doc_to_text(docs[1])
    assert prompt.startswith("男：你好。\n女：你好") and prompt.endswith("答：")
    assert "A. 问路\nB. 吃饭" in prompt and "“A”，“B”" in prompt and "C." not in prompt
    assert c3.doc_to_target(docs[0]) == "B"
    assert c3.process_results(docs[0], ["B"]) == {"acc": 1.0}
    assert c3.process_results(docs[0], ["答案是B。"]) == {"acc": 1.0}
    assert c3.process_results(docs[0], ["A"]) == {"acc": 0.0}
    assert c3.process_results(docs[0], ["车站"]) == {"acc": 0.0}  # no letter: wrong


def test_c3_answer_not_among_choices_is_an_error():
    import datasets

    row = _c3_dataset()[0]
    row["questions"]["answer"][0] = "机场"
    with pytest.raises(ValueError, match="t-1, question 0"):
        c3.process_docs(datasets.Dataset.from_list([row]))


def test_axb_scoring_and_matthews_correlation():
    from lm_eval.api.metrics import matthews_corrcoef

    entailed = {"sentence1": "s1", "sentence2": "s2", "idx": 0, "label": 0}
    not_entailed = {**entailed, "label": 1}
    assert axb.doc_to_target(entailed) == "A" and axb.doc_to_target(not_entailed) == "B"
    assert "A. Yes\nB. No\nAnswer:" in axb.doc_to_text(entailed)
    right = axb.process_results(entailed, [" A"])
    assert right == {"acc": 1.0, "mcc": (0, 0)}
    wrong = axb.process_results(not_entailed, [" A. Yes"])
    assert wrong == {"acc": 0.0, "mcc": (1, 0)}
    unreadable = axb.process_results(not_entailed, [" maybe"])
    assert unreadable == {"acc": 0.0, "mcc": (1, axb.INVALID)}
    perfect = [(0, 0), (1, 1), (0, 0), (1, 1)]
    assert matthews_corrcoef(perfect) == pytest.approx(1.0)
    inverted = [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert matthews_corrcoef(inverted) == pytest.approx(-1.0)


def test_generative_commonsense_qa():
    import datasets

    rows = [
        {
            "id": f"q{i}",
            "question": f"Question {i}? ",
            "question_concept": "c",
            "choices": {"label": list("ABCDE"), "text": ["a", "b", "c", "d", "e"]},
            "answerKey": "ABCDE"[i % 5],
        }
        for i in range(10)
    ]
    dataset = datasets.Dataset.from_list(rows)
    assert [r["id"] for r in commonsense_qa.exemplars(dataset)] == [f"q{i}" for i in range(8)]
    assert [r["id"] for r in commonsense_qa.scored(dataset)] == ["q8", "q9"]
    doc = rows[8]  # answer D
    assert commonsense_qa.doc_to_text(doc) == (
        "Question: Question 8?\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer:"
    )
    assert commonsense_qa.process_results(doc, [" D"]) == {"acc": 1.0}
    assert commonsense_qa.process_results(doc, [" D. d"]) == {"acc": 1.0}
    assert commonsense_qa.process_results(doc, [" C"]) == {"acc": 0.0}
    assert commonsense_qa.process_results(doc, [" d"]) == {"acc": 0.0}


MBPP_DOC = {
    "task_id": 11,
    "text": "Write a function to add two numbers.",
    "test_setup_code": "",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
}


@pytest.mark.parametrize(
    ("completion", "status"),
    [
        ("def add(a, b):\n    return a + b\n", "passed"),
        ("def add(a, b):\n    return a - b\n", "failed"),
        ("def add(a, b):\n    while True:\n        pass\n", "timeout"),
        ("def add(a, b):\n    x = [0] * (1 << 34)\n    return a + b\n", "memory"),
        (
            "import socket\ndef add(a, b):\n    socket.create_connection(('example.com', 80))\n",
            "network",
        ),
        (
            "import subprocess\nsubprocess.run(['true'])\ndef add(a, b):\n    return a + b\n",
            "failed",
        ),
        ("def add(a, b) return a + b\n", "failed"),
    ],
)
def test_sandbox_outcomes(completion, status):
    result = run_program(mbpp.program(MBPP_DOC, completion), timeout_s=3, memory_mb=512)
    assert result.status == status, result.detail


def test_sandbox_cannot_touch_files_outside_its_folder(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    program = f"import os\nos.remove({str(target)!r})\n"
    assert run_program(program, timeout_s=3).status == "failed"
    assert target.read_text() == "precious"


def test_mbpp_pass_at_1_and_exemplars():
    import datasets

    assert mbpp.process_results(MBPP_DOC, ["def add(a, b):\n    return a + b\n"]) == {
        "pass_at_1": 1.0
    }
    assert mbpp.process_results(MBPP_DOC, ["def add(a, b):\n    return 3\n"]) == {"pass_at_1": 0.0}
    from lm_edit.evaluation.run_notes import notes

    # the results' config (EditedLM.get_model_info) says which isolation layers were active
    assert notes()["code_sandbox"] == mbpp.isolation()
    assert notes()["code_sandbox"]["layers"]["network_namespace"] in (True, False)
    prompt_split = datasets.Dataset.from_list([{"task_id": t} for t in (1, 4, 3, 2, 5)])
    exemplars = mbpp.fewshot_docs(prompt_split)
    assert [(r["task_id"], r["is_fewshot"]) for r in exemplars] == [(t, True) for t in (2, 3, 4)]
    with pytest.raises(ValueError, match=r"\[4\]"):
        mbpp.fewshot_docs(datasets.Dataset.from_list([{"task_id": t} for t in (2, 3)]))


MBPP_PROMPT_FIXTURE = Path(__file__).parent / "fixtures" / "mbpp_prompt"


@pytest.mark.slow
def test_mbpp_exemplars_show_their_solution_and_the_test_problem_does_not(
    offline_datasets, task_manager
):
    from lm_eval.tasks import get_task_dict

    offline.build_offline_cache(MBPP_PROMPT_FIXTURE, ["mbpp"], offline_datasets)
    task = get_task_dict(["mbpp_sandboxed"], task_manager)["mbpp_sandboxed"]
    task.build_all_requests(limit=1, rank=0, world_size=1)
    [request] = task.instances
    context, generation_kwargs = request.args
    exemplars = list(task.fewshot_docs())
    assert [row["task_id"] for row in exemplars] == [2, 3, 4]
    for row in exemplars:
        assert f"[BEGIN]\n{row['code']}\n[DONE]" in context
    assert context.count("[DONE]") == 3
    assert context.endswith("assert squares([-2]) == [4]\n[BEGIN]\n")
    assert generation_kwargs["until"] == ["[DONE]"]
    [test_doc] = list(task.eval_docs)
    assert task.process_results(test_doc, [test_doc["code"]]) == {"pass_at_1": 1.0}


def test_missing_math_dependency_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("lm_eval.tasks.minerva_math")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lm-edit\[math\]'"):
        minerva.check_dependencies()
    with pytest.raises(ModuleNotFoundError, match="needs sympy, math_verify"):
        minerva.list_fewshot_samples()


def test_lite_selection_rule_is_stable_and_stratified():
    ids = [str(i) for i in range(1000)]
    chosen = lite.choose(ids, "mbpp", 100)
    assert len(chosen) == 100 and chosen == lite.choose(reversed(ids), "mbpp", 100)
    assert lite.choose(ids[:50], "mbpp", 100) == sorted(ids[:50])
    assert set(lite.choose(ids, "mbpp", 10)) <= set(chosen)  # nested: k smallest ranks
    pairs = [("a", f"a{i}") for i in range(30)] + [("b", f"b{i}") for i in range(3)]
    stratified = lite.choose_stratified(pairs, "bbh")
    assert sum(i.startswith("a") for i in stratified) == 4
    assert sum(i.startswith("b") for i in stratified) == 3


def test_lite_filter_keeps_other_splits_and_rejects_foreign_data():
    import datasets

    recorded = sorted(lite.recorded_ids()["axb"], key=int)[:3]
    rows = [{"idx": int(i), "sentence1": "", "sentence2": "", "label": 0} for i in recorded]
    rows.append({"idx": 100000, "sentence1": "", "sentence2": "", "label": 0})
    test = datasets.Dataset.from_list(rows, split="test")
    assert [str(r["idx"]) for r in lite.axb(test)] == recorded
    dev = datasets.Dataset.from_list(rows, split="dev")
    assert len(lite.axb(dev)) == 4  # not the evaluation split: untouched
    foreign = datasets.Dataset.from_list(rows[-1:], split="test")
    with pytest.raises(ValueError, match="not the release the ids were taken from"):
        lite.axb(foreign)


def test_recorded_lite_sizes():
    data = json.loads(lite.lite_ids_path().read_text(encoding="utf-8"))
    sizes = {name: len(entry["ids"]) for name, entry in data["benchmarks"].items()}
    for name in ("mbpp", "commonsense_qa", "c3", "axb"):
        assert sizes[name] == 100
    assert sizes["mmlu"] == 57 * 2 and sizes["bbh"] == 27 * 4 and sizes["math"] == 7 * 15


def _capability_copies() -> Path:
    data = shared_data_dir()
    if data is None or not (data / "capability").is_dir():
        pytest.skip("../shared/data/capability is not available")
    return data / "capability"


@pytest.mark.shared_data
def test_recorded_lite_ids_match_the_rule_on_the_local_copies():
    recorded = json.loads(lite.lite_ids_path().read_text(encoding="utf-8"))
    assert lite.record(_capability_copies()) == recorded


@pytest.fixture(scope="module")
def capability_cache(tmp_path_factory):
    """The datasets cache built from ../shared/data/capability plus the AX-b and TyDiQA
    fixtures, with the Hub off."""
    import datasets.config

    source = _capability_copies()
    cache = tmp_path_factory.mktemp("datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        offline.build_offline_cache(source, None, cache)
        offline.build_offline_cache(FIXTURES, ["axb", "tydiqa"], cache)
        yield cache


LITE_BENCHMARKS = ("mmlu", "bbh", "math", "axb", "commonsense_qa", "c3", "tydiqa", "mbpp")


def _doc_counts(tasks: dict, counts: dict[str, int] | None = None) -> dict[str, int]:
    counts = {} if counts is None else counts
    for name, task in tasks.items():
        if isinstance(task, dict):
            _doc_counts(task, counts)
        else:
            counts[name] = len(list(task.eval_docs))
    return counts


def _by_benchmark(counts: dict[str, int]) -> dict[str, int]:
    prefixes = {
        "mmlu": "mmlu_",
        "bbh": "bbh_cot_fewshot_",
        "math": "edit_math_",
        "axb": "axb_gen",
        "commonsense_qa": "commonsense_qa_gen",
        "c3": "c3_",
        "tydiqa": "tydiqa_goldp_",
        "mbpp": "mbpp_sandboxed",
    }
    return {
        name: sum(n for task, n in counts.items() if task.startswith(prefix))
        for name, prefix in prefixes.items()
    }


@pytest.mark.shared_data
@pytest.mark.slow
def test_capability_groups_load_offline(capability_cache, task_manager):
    from lm_eval.tasks import get_task_dict

    lite_tasks = get_task_dict(["edit_capability_lite"], task_manager)
    lite_counts = _doc_counts(lite_tasks)
    [group] = lite_tasks.values()
    assert sorted(getattr(key, "group_name", key) for key in group) == sorted(
        f"edit_capability_lite_{name}" for name in LITE_BENCHMARKS
    )
    [mbpp] = (v for k, v in group.items() if getattr(k, "group_name", k).endswith("mbpp"))
    assert mbpp["mbpp_sandboxed"].UNSAFE_CODE  # lm-eval asks for --confirm_run_unsafe_code
    assert _by_benchmark(lite_counts) == {
        "mmlu": 115,  # 57 x 2, and one subject holds a repeated question twice
        "bbh": 108,
        "math": 105,
        "axb": 6,  # the fixture (the real AX-b is not available here)
        "commonsense_qa": 100,
        "c3": 100,
        "tydiqa": 10,  # the fixture
        "mbpp": 100,
    }
    full = _by_benchmark(_doc_counts(get_task_dict(["edit_capability"], task_manager)))
    assert full == {
        "mmlu": 14042,
        "bbh": 6511,
        "math": 5000,
        "axb": 6,
        "commonsense_qa": 1213,  # 1,221 less the 8 exemplars
        "c3": 3892,
        "tydiqa": 10,
        "mbpp": 500,
    }
