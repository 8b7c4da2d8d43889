"""Entry points named by the task YAMLs (``!function utils.<name>``).

lm-eval loads this file by path; the logic lives in the installed package so that the
tasks and the ``edited-hf`` model share one edit session.
"""

from lm_edit.evaluation.docs import build_forced_docs, build_generation_docs
from lm_edit.evaluation.fluency import mean_per_case, reference_score
from lm_edit.evaluation.fluency_task import build_fluency_docs, fluency_metrics
from lm_edit.evaluation.metrics import (
    counterfact_metrics,
    forced_metrics,
    generation_metrics,
    harmonic_score,
)
from lm_edit.evaluation.mquake_task import any_per_case, build_mquake_docs, mquake_metrics
from lm_edit.evaluation.task import TeacherForcedTask

__all__ = [
    "TeacherForcedTask",
    "any_per_case",
    "build_mquake_docs",
    "mquake_metrics",
    "reference_score",
    "build_fluency_docs",
    "build_forced_docs",
    "build_generation_docs",
    "counterfact_metrics",
    "fluency_metrics",
    "forced_metrics",
    "generation_metrics",
    "harmonic_score",
    "mean_per_case",
]
