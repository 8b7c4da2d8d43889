"""Facts about this run that tasks learn while scoring and the results should carry (for
example which isolation layers the code sandbox had). :meth:`EditedLM.get_model_info`
adds them to the ``config`` that lm-eval writes with the results."""

from __future__ import annotations

from typing import Any

_NOTES: dict[str, Any] = {}


def note(key: str, value: Any) -> None:
    """Record ``value`` under ``key`` for this run's results (the last value wins)."""
    _NOTES[key] = value


def notes() -> dict[str, Any]:
    """Everything noted so far in this process."""
    return dict(_NOTES)
