"""MBPP (Austin et al., 2021), 3-shot, with generated code run by
:mod:`lm_edit.studies.capability.sandbox` instead of the Hub's ``code_eval`` metric
(which lm-eval's stock ``mbpp`` loads at import, so that task cannot even be loaded
offline). The first scored problem logs, in one line, which isolation layers the sandbox
has on this machine (:func:`isolation`)."""

from __future__ import annotations

from typing import Any

from lm_edit.evaluation.run_notes import note
from lm_edit.studies.capability.sandbox import isolation_report, run_program

FEWSHOT_TASK_IDS = (2, 3, 4)
"""The three prompt-split problems used as exemplars (as in lm-eval's ``mbpp``)."""


def fewshot_docs(dataset: Any) -> Any:
    """The exemplar problems, in the order of :data:`FEWSHOT_TASK_IDS`, each marked
    ``is_fewshot`` so that the task's ``doc_to_target`` shows its solution and ``[DONE]``
    (a test problem's target is its asserts)."""
    rows = {row["task_id"]: i for i, row in enumerate(dataset)}
    missing = [t for t in FEWSHOT_TASK_IDS if t not in rows]
    if missing:
        raise ValueError(f"MBPP exemplar task ids {missing} are not in the few-shot split.")
    exemplars = dataset.select([rows[t] for t in FEWSHOT_TASK_IDS])
    return exemplars.add_column("is_fewshot", [True] * len(exemplars))


def program(doc: dict[str, Any], completion: str) -> str:
    """Setup code, the generated code and the problem's three asserts, as one program."""
    parts = [doc.get("test_setup_code") or "", completion, *doc["test_list"]]
    return "\n".join(part for part in parts if part)


def isolation() -> dict[str, object]:
    """The sandbox's isolation layers on this machine and a one-line summary (probed and
    logged once per process)."""
    return isolation_report().as_dict()


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """pass@1 of the greedy completion (1.0 when every assert holds)."""
    note("code_sandbox", isolation())
    return {"pass_at_1": float(run_program(program(doc, results[0])).passed)}
