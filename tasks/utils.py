"""Entry points named by the task YAMLs (``!function utils.<name>``).

lm-eval loads this file by path; the logic lives in the installed package so that the
tasks and the ``edited-hf`` model share one edit session.
"""

from lm_edit.tasks_support import (
    build_docs,
    counterfact_metrics,
    harmonic_score,
    zsre_metrics,
)

__all__ = ["build_docs", "counterfact_metrics", "harmonic_score", "zsre_metrics"]
