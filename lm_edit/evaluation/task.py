"""The lm-eval task class of the teacher-forced editing tasks.

A stock ``multiple_choice`` task sends every choice after one shared context. Token-by-
token teacher forcing needs a different context per answer token, so this subclass
sends the doc's own ``requests`` (``[context, continuation]`` pairs, see
:func:`lm_edit.evaluation.docs.forced_doc`) as stock ``loglikelihood`` requests instead.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask


class TeacherForcedTask(ConfigurableTask):
    """A ``multiple_choice`` task whose requests come from each doc's ``requests``."""

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """lm-eval passes the whole YAML, ``class`` key included, which ``TaskConfig``
        rejects: drop it."""
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(config=config, **kwargs)

    def construct_requests(self, doc: dict, ctx: Any, **kwargs: Any) -> list[Instance]:
        """One loglikelihood request per ``[context, continuation]`` pair of the doc."""
        kwargs.pop("apply_chat_template", None)
        kwargs.pop("chat_template", None)
        return [
            Instance(
                request_type="loglikelihood",
                doc=doc,
                arguments=(context, continuation),
                idx=i,
                **kwargs,
            )
            for i, (context, continuation) in enumerate(doc["requests"])
        ]
