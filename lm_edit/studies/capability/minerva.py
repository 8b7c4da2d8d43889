"""MATH in the Minerva 4-shot protocol, delegating to lm-eval's ``minerva_math`` functions,
with a clear message when the optional dependencies are missing (the stock task fails
while its YAML is being read, deep inside lm-eval)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

INSTALL_HINT = (
    "MATH (edit_math) needs sympy, math_verify and antlr4-python3-runtime 4.11, which are "
    "not installed. Install them with: pip install 'lm-edit[math]'"
)


def _stock() -> ModuleType:
    try:
        from lm_eval.tasks.minerva_math import utils
    except (ModuleNotFoundError, AssertionError) as exc:
        raise ModuleNotFoundError(INSTALL_HINT) from exc
    return utils


def check_dependencies() -> None:
    """Raise :class:`ModuleNotFoundError` with the install hint if MATH cannot be scored."""
    _stock()


def process_docs(dataset: Any) -> Any:
    """lm-eval's Minerva processing (adds the boxed ``answer``)."""
    return _stock().process_docs(dataset)


def doc_to_text(doc: dict[str, Any]) -> str:
    """``Problem:\\n...\\n\\nSolution:``."""
    return _stock().doc_to_text(doc)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Exact match of the final answer and math_verify equivalence."""
    return _stock().process_results(doc, results)


def list_fewshot_samples() -> list[dict[str, Any]]:
    """Minerva's four exemplars."""
    return _stock().list_fewshot_samples()
