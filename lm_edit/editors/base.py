"""The editor lifecycle every paradigm fits, and the registry of implementations.

::

    editor = create_editor(spec, anatomy, seed)    # hyperparameters declared in its config
    editor.prepare(model, tokenizer)               # statistics, checkpoints; once per stream
    record = editor.apply(model, tokenizer, batch) # transactional: all of the batch or nothing
    record.undo(model)                             # restore tensors, remove modules and hooks
    editor.reset()                                 # forget stream state after the stream's undo

An implementation subclasses :class:`Editor`, declares its hyperparameters as an
:class:`EditorConfig` dataclass (fields made with :func:`~lm_edit.core.arguments.argument`
may carry bounds), implements :meth:`Editor.edit`, and registers itself with
:func:`register_editor`; an editor YAML in ``editors/`` names it as ``implementation``.
Every change :meth:`Editor.edit` makes goes through the :class:`EditRecord` it is handed
(``record.snapshot`` before overwriting a tensor, ``record.set_module``,
``record.add_hook``, ``record.add_prompt_hook``, ``record.on_undo`` for stream state),
so :meth:`Editor.apply` can take back a batch that fails half-way and the stream can undo
any paradigm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from torch import nn

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.arguments import RESERVED_NAMES, check_bounds
from lm_edit.core.record import EditRecord, timed
from lm_edit.core.tokens import context_length, encode
from lm_edit.data.requests import EditRequest


@dataclass(frozen=True)
class EditorConfig:
    """Base of every editor's hyperparameters: a frozen dataclass whose bounds are checked
    on construction, from the command line and from Python alike."""

    def __post_init__(self) -> None:
        check_bounds(self, type(self).__name__)


class Editor(ABC):
    """One configured editor, owned by one stream. State it carries across batches lives on
    the instance, never in module globals; every change it makes is recorded for undo."""

    config_class: ClassVar[type[EditorConfig]] = EditorConfig
    """The dataclass of this implementation's hyperparameters."""
    can_batch: ClassVar[bool] = True
    """Whether one apply step may hold several requests."""
    changes_outputs: ClassVar[bool] = True
    """Whether an applied edit changes the model's own forward pass (False for ``none``,
    and for in-context editors, whose edit lives in the prompt)."""
    changes_prompts: ClassVar[bool] = False
    """Whether the edit takes through a prompt hook (:mod:`lm_edit.core.prompts`): the
    requests ``edited-hf`` serves are rewritten, the weights stay as they are."""
    quick_settings: ClassVar[dict[str, Any]] = {}
    """Hyperparameters that make this editor fast on a tiny model (smoke tests, and the
    registry-wide lifecycle test that covers every registered editor)."""

    def __init__(
        self, config: EditorConfig, *, name: str, anatomy: ModelAnatomy, seed: int = 0
    ) -> None:
        self.name = name
        self.config = config
        self.anatomy = anatomy
        self.seed = seed

    def prepare(self, model: nn.Module, tokenizer: Any) -> None:  # noqa: B027
        """Load or compute what editing needs (statistics, checkpoints); idempotent and
        cached. :meth:`apply` calls it; call it earlier to keep its cost out of the first
        edit's time."""

    @abstractmethod
    def edit(
        self, model: nn.Module, tokenizer: Any, requests: list[EditRequest], record: EditRecord
    ) -> None:
        """Make ``model`` know ``requests``, recording every change in ``record`` before
        making it (see the module docstring)."""

    def apply(self, model: nn.Module, tokenizer: Any, requests: list[EditRequest]) -> EditRecord:
        """Apply one batch, all of it or nothing: when :meth:`edit` raises, the changes it
        made so far are taken back before the error propagates."""
        if not requests:
            raise ValueError(f"{self.name}: no edit requests to apply.")
        if len(requests) > 1 and not self.can_batch:
            raise ValueError(
                f"Editor {self.name!r} edits one request at a time; got a batch of "
                f"{len(requests)}. Use edit_batch_size=1."
            )
        self.check_requests(model, tokenizer, requests)
        self.prepare(model, tokenizer)
        record = EditRecord(editor=self.name, case_ids=[r.case_id for r in requests])
        try:
            with timed(model, record):
                self.edit(model, tokenizer, requests, record)
        except BaseException:
            record.undo(model)
            raise
        return record

    def tokens_needed(self, tokenizer: Any, request: EditRequest) -> int:
        """The longest input this editor builds for ``request`` (the prompt followed by
        the new target; editors that add context add its length)."""
        return len(encode(tokenizer, f"{request.prompt} {request.target_new}"))

    def check_requests(self, model: nn.Module, tokenizer: Any, requests: list[EditRequest]) -> None:
        """Refuse a batch the model cannot take, before anything changes: a request longer
        than the model's context."""
        limit = context_length(model)
        if limit is None:
            return
        for request in requests:
            needed = self.tokens_needed(tokenizer, request)
            if needed > limit:
                raise ValueError(
                    f"{self.name}: request {request.case_id!r} needs {needed} tokens (prompt "
                    f"and target, with the editor's context) but the model takes at most "
                    f"{limit}; shorten its prompt or leave the case out."
                )

    def undo(self, model: nn.Module, record: EditRecord) -> None:
        """Take back one applied batch (undo a stream's records newest first)."""
        record.undo(model)

    def reset(self) -> None:  # noqa: B027
        """Forget state accumulated from applied batches (after the stream was undone)."""


IMPLEMENTATIONS: dict[str, type[Editor]] = {}
"""Registered implementations by the name editor YAMLs give as ``implementation``."""


def register_editor(implementation: str):
    """Class decorator: register an :class:`Editor` subclass under ``implementation``.

    Fails at definition time when a hyperparameter takes a name the model wrapper claims
    (an HFLM or loading argument, an ``edited-hf`` argument or an anatomy override).
    """

    def register(cls: type[Editor]) -> type[Editor]:
        if not (isinstance(cls, type) and issubclass(cls, Editor)):
            raise TypeError(f"{cls!r} is not an Editor subclass.")
        names = {f.name for f in fields(cls.config_class)}
        clash = sorted(names & RESERVED_NAMES)
        if clash:
            raise TypeError(
                f"{cls.__name__}: hyperparameter(s) {', '.join(clash)} would collide with "
                "edited-hf's or HFLM's own arguments; rename them."
            )
        known = IMPLEMENTATIONS.get(implementation)
        if known is not None and _qualified(known) != _qualified(cls):
            raise TypeError(
                f"Editor implementation {implementation!r} is registered by both "
                f"{_qualified(known)} and {_qualified(cls)}."
            )
        IMPLEMENTATIONS[implementation] = cls
        return cls

    return register


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
