"""What one edit step changed, and how to take it back.

An :class:`EditRecord` holds a list of undo actions, one per change, in the order the
changes were made: a tensor overwritten in place (:class:`RestoreTensor`), a module
replaced by a wrapper or an added one (:class:`RestoreModule`), a forward hook
(:class:`RemoveHook`), a prompt hook (:class:`RemovePromptHook`, see
:mod:`lm_edit.core.prompts`), or a change to the editor's own stream state
(:class:`UndoState`).
:meth:`EditRecord.undo` runs them in reverse order, so every paradigm (weights rewritten,
modules added, the forward or the prompt wrapped) is undone by one call, bit for bit.

The record is filled *while* the step runs (each change is recorded before it is made),
so a step that fails half-way can still be undone: this is what makes an editor's
``apply`` transactional (:class:`lm_edit.editors.base.Editor`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from lm_edit.core.prompts import PromptHook, register_prompt_hook, remove_prompt_hook


class UndoAction(Protocol):
    """One change to a model (or to an editor's state) and how to take it back."""

    def undo(self, model: nn.Module) -> None:
        """Take the change back."""
        ...

    def redo(self, model: nn.Module) -> None:
        """Make the change again after :meth:`undo` (used to look at the unedited model
        for a moment, see :func:`temporarily_unedited`)."""
        ...


@dataclass
class RestoreTensor:
    """A parameter or buffer overwritten in place; ``original`` is a CPU copy taken first."""

    name: str
    original: torch.Tensor = field(repr=False)
    _edited: torch.Tensor | None = field(default=None, repr=False)

    def _tensor(self, model: nn.Module) -> torch.Tensor:
        try:
            return model.get_parameter(self.name)
        except AttributeError:
            return model.get_buffer(self.name)

    @torch.no_grad()
    def undo(self, model: nn.Module) -> None:
        tensor = self._tensor(model)
        self._edited = tensor.detach().to("cpu", copy=True)
        tensor.copy_(self.original.to(tensor.device))

    @torch.no_grad()
    def redo(self, model: nn.Module) -> None:
        if self._edited is not None:
            tensor = self._tensor(model)
            tensor.copy_(self._edited.to(tensor.device))
            self._edited = None


@dataclass
class RestoreModule:
    """A submodule set at ``path``: ``original`` is what was there before (``None`` when the
    step added a new attribute); ``added`` is the module the step put there."""

    path: str
    original: nn.Module | None = field(repr=False)
    added: nn.Module = field(repr=False)

    def _parent(self, model: nn.Module) -> tuple[nn.Module, str]:
        parent, _, attribute = self.path.rpartition(".")
        return (model.get_submodule(parent) if parent else model), attribute

    def undo(self, model: nn.Module) -> None:
        parent, attribute = self._parent(model)
        if self.original is None:
            delattr(parent, attribute)
        else:
            setattr(parent, attribute, self.original)

    def redo(self, model: nn.Module) -> None:
        parent, attribute = self._parent(model)
        setattr(parent, attribute, self.added)


@dataclass
class RemoveHook:
    """A forward (pre-)hook registered on the module at ``path``."""

    path: str
    hook: Callable[..., Any] = field(repr=False)
    pre: bool = False
    with_kwargs: bool = False
    handle: Any = field(default=None, repr=False)

    def register(self, model: nn.Module) -> None:
        module = model.get_submodule(self.path)
        register = module.register_forward_pre_hook if self.pre else module.register_forward_hook
        self.handle = register(self.hook, with_kwargs=self.with_kwargs)

    def undo(self, model: nn.Module) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def redo(self, model: nn.Module) -> None:
        self.register(model)


@dataclass
class RemovePromptHook:
    """A prompt hook registered on the model (an in-context edit)."""

    hook: PromptHook = field(repr=False)

    def undo(self, model: nn.Module) -> None:
        remove_prompt_hook(model, self.hook)

    def redo(self, model: nn.Module) -> None:
        register_prompt_hook(model, self.hook)


@dataclass
class UndoState:
    """A change to the editor's stream state (AlphaEdit's preserved keys, a codebook): the
    model is untouched, so it is skipped while looking at the unedited model."""

    description: str
    take_back: Callable[[], None] = field(repr=False)

    def undo(self, model: nn.Module) -> None:
        self.take_back()

    def redo(self, model: nn.Module) -> None:
        """Stream state is never re-applied: only :meth:`EditRecord.undo` calls ``undo``."""


@dataclass
class EditRecord:
    """What one apply step changed, how long it took, and how to undo it."""

    editor: str
    case_ids: list[str]
    actions: list[UndoAction] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    undone: bool = False

    # -- recording changes (call before making the change) ---------------------------------

    def snapshot(self, model: nn.Module, name: str) -> torch.Tensor:
        """Keep a pre-edit copy of parameter (or buffer) ``name`` once; return the live tensor."""
        action = RestoreTensor(name, torch.empty(0))
        tensor = action._tensor(model)
        if name not in self.originals:
            action.original = tensor.detach().to("cpu", copy=True)
            self.actions.append(action)
        return tensor

    def set_module(self, model: nn.Module, path: str, module: nn.Module) -> nn.Module:
        """Put ``module`` at ``path`` (replacing a submodule or adding a new attribute)."""
        parent, _, attribute = path.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        original = getattr(owner, attribute, None)
        if original is not None and not isinstance(original, nn.Module):
            raise TypeError(f"{path} is a {type(original).__name__}, not a module.")
        action = RestoreModule(path, original, module)
        self.actions.append(action)
        action.redo(model)
        return module

    def add_hook(
        self,
        model: nn.Module,
        path: str,
        hook: Callable[..., Any],
        *,
        pre: bool = False,
        with_kwargs: bool = False,
    ) -> RemoveHook:
        """Register a forward (``pre=True``: pre-forward) hook on the module at ``path``."""
        action = RemoveHook(path, hook, pre=pre, with_kwargs=with_kwargs)
        self.actions.append(action)
        action.register(model)
        return action

    def add_prompt_hook(self, model: nn.Module, hook: PromptHook) -> RemovePromptHook:
        """Register ``hook`` to rewrite every request's context the model wrapper serves."""
        action = RemovePromptHook(hook)
        self.actions.append(action)
        action.redo(model)
        return action

    def on_undo(self, description: str, take_back: Callable[[], None]) -> None:
        """Record a change to the editor's stream state and the call that takes it back."""
        self.actions.append(UndoState(description, take_back))

    # -- reading and undoing ---------------------------------------------------------------

    @property
    def originals(self) -> dict[str, torch.Tensor]:
        """Pre-edit CPU copies of every tensor this step overwrote, by name."""
        return {a.name: a.original for a in self.actions if isinstance(a, RestoreTensor)}

    @property
    def modules(self) -> dict[str, nn.Module]:
        """Every module this step put into the model, by path."""
        return {a.path: a.added for a in self.actions if isinstance(a, RestoreModule)}

    @property
    def hooks(self) -> list[str]:
        """Paths of the modules this step hooked."""
        return [a.path for a in self.actions if isinstance(a, RemoveHook)]

    @property
    def prompt_hooks(self) -> int:
        """How many prompt hooks this step registered."""
        return sum(isinstance(a, RemovePromptHook) for a in self.actions)

    @property
    def weights_only(self) -> bool:
        """True when the step only overwrote existing tensors (the model stays a plain
        Hugging Face model that ``save_pretrained`` writes and ``--model hf`` reloads)."""
        return not self.modules and not self.hooks and not self.prompt_hooks

    def added_parameters(self) -> int:
        """Parameters in the modules this step added (a wrapper's own, not the wrapped one's)."""
        total = 0
        for action in self.actions:
            if isinstance(action, RestoreModule):
                wrapped = set() if action.original is None else set(action.original.parameters())
                total += sum(p.numel() for p in action.added.parameters() if p not in wrapped)
        return total

    def undo(self, model: nn.Module) -> None:
        """Take back every change of this step, newest first; idempotent.

        Undo the records of a stream in reverse order: restoring an early record also
        discards later edits of the same tensors.
        """
        if self.undone:
            return
        for action in reversed(self.actions):
            action.undo(model)
        self.undone = True

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view (no tensors)."""
        out = {
            "editor": self.editor,
            "case_ids": self.case_ids,
            "seconds": round(self.seconds, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
            "parameters": sorted(self.originals),
            **self.details,
        }
        if self.modules:
            out["added_modules"] = sorted(self.modules)
            # an editor that grows a module over later batches reports its own count
            out.setdefault("added_parameters", self.added_parameters())
        if self.hooks:
            out["hooks"] = self.hooks
        if self.prompt_hooks:
            out["prompt_hooks"] = self.prompt_hooks
        return out


@contextmanager
def timed(model: nn.Module, record: EditRecord) -> Iterator[EditRecord]:
    """Time the body and track peak memory (CUDA's allocator, else the process's RSS)."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield record
    finally:
        record.seconds = time.perf_counter() - start
        record.peak_memory_bytes = (
            torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_peak()
        )


def _rss_peak() -> int | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None


def earliest_originals(records: list[EditRecord]) -> dict[str, torch.Tensor]:
    """The pre-edit copy of every tensor the records overwrote, from the first record that
    overwrote it (so it is the unedited value however many edits came after)."""
    originals: dict[str, torch.Tensor] = {}
    for record in records:
        for name, tensor in record.originals.items():
            originals.setdefault(name, tensor)
    return originals


@contextmanager
def temporarily_unedited(model: nn.Module, records: list[EditRecord]) -> Iterator[nn.Module]:
    """Inside the block ``model`` is the unedited model (every change of ``records`` taken
    back, modules and hooks included); afterwards every change is back, bit for bit.
    The editors' stream state is left alone."""
    actions = [a for r in records if not r.undone for a in r.actions]
    model_actions = [a for a in actions if not isinstance(a, UndoState)]
    for action in reversed(model_actions):
        action.undo(model)
    try:
        yield model
    finally:
        for action in model_actions:
            action.redo(model)
