"""Prompt hooks: edits that change what a model is asked rather than its weights.

An in-context editor registers a :class:`PromptHook` on a model through its
:class:`~lm_edit.core.record.EditRecord` (``record.add_prompt_hook``), so undo removes it
like a forward hook. The model wrapper that serves requests (``edited-hf``) passes every
request's context through :func:`rewrite_prompt` before scoring or generating; a plain
forward pass of the model is unchanged. Hooks are kept per model object, outside it, so
the module tree and its state dict stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from weakref import WeakKeyDictionary

from torch import nn


class PromptHook(Protocol):
    """Rewrites the context of one request."""

    def rewrite(self, context: str, budget: int | None) -> tuple[str, int]:
        """``context`` as the model should see it, and the tokens that adds; the result
        should take at most ``budget`` tokens when one is given."""
        ...


@dataclass(frozen=True)
class Rewritten:
    """A request's context after every hook, and the tokens the hooks added."""

    text: str
    added_tokens: int


_HOOKS: WeakKeyDictionary[nn.Module, list[PromptHook]] = WeakKeyDictionary()


def prompt_hooks(model: nn.Module) -> list[PromptHook]:
    """The hooks registered on ``model``, in registration order (a copy)."""
    return list(_HOOKS.get(model, ()))


def register_prompt_hook(model: nn.Module, hook: PromptHook) -> None:
    """Add ``hook`` after the model's other hooks (use ``record.add_prompt_hook``)."""
    _HOOKS.setdefault(model, []).append(hook)


def remove_prompt_hook(model: nn.Module, hook: PromptHook) -> None:
    """Remove ``hook`` from the model (a no-op when it is not registered)."""
    hooks = _HOOKS.get(model, [])
    if any(h is hook for h in hooks):
        hooks[:] = [h for h in hooks if h is not hook]
    if not hooks:
        _HOOKS.pop(model, None)


def rewrite_prompt(model: nn.Module, context: str, budget: int | None = None) -> Rewritten:
    """``context`` passed through every hook of ``model`` in order."""
    added = 0
    for hook in prompt_hooks(model):
        context, tokens = hook.rewrite(context, budget)
        added += tokens
    return Rewritten(context, added)
