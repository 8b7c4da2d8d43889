"""Which isolation layers the sandbox has on this machine, probed once and logged once."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from lm_edit.studies.capability.sandbox.runner import LAYERS, run_program

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IsolationReport:
    """``layers`` maps each of :data:`LAYERS` to whether it was in force for a probe
    program; ``summary`` says the same in one line."""

    layers: dict[str, bool]
    summary: str

    @property
    def complete(self) -> bool:
        return all(self.layers.values())

    def as_dict(self) -> dict[str, object]:
        return {"layers": dict(self.layers), "summary": self.summary}


def summarize(layers: dict[str, bool]) -> str:
    """One line: all layers active, or which are missing."""
    missing = [name for name in LAYERS if not layers.get(name)]
    if not missing:
        return "code sandbox: all isolation layers active (" + ", ".join(LAYERS) + ")"
    active = [name for name in LAYERS if layers.get(name)]
    return (
        "code sandbox: MISSING "
        + ", ".join(missing)
        + "; active: "
        + (", ".join(active) or "none")
        + " (generated code is less contained; see README, Reliability)"
    )


@functools.lru_cache(maxsize=1)
def isolation_report() -> IsolationReport:
    """Run a probe program once, log the layers it had in one line, and return them."""
    result = run_program("pass\n", timeout_s=30)
    layers = dict(result.layers)
    report = IsolationReport(layers, summarize(layers))
    if result.status != "passed":
        logger.warning("code sandbox probe did not pass (%s): %s", result.status, result.detail)
    (logger.info if report.complete else logger.warning)(report.summary)
    return report
