"""Entry points named by the task YAMLs (``!function utils.<name>``).

lm-eval loads this file by path; the logic lives in the installed package so that the
tasks and the ``edited-hf`` model share one edit session.
"""

from lm_edit.edit_docs import build_forced_docs, build_generation_docs
from lm_edit.edit_metrics import (
    counterfact_metrics,
    forced_metrics,
    generation_metrics,
    harmonic_score,
)
from lm_edit.edit_task import TeacherForcedTask

__all__ = [
    "TeacherForcedTask",
    "build_forced_docs",
    "build_generation_docs",
    "counterfact_metrics",
    "forced_metrics",
    "generation_metrics",
    "harmonic_score",
]
