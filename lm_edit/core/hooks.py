"""The one way lm-edit reads or patches activations: context managers whose hooks are
always removed, even when the body raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn


class StopForward(Exception):
    """Raised from a hook to end a forward pass early (nothing deeper is needed)."""


@contextmanager
def _registered(hooks: list[tuple[nn.Module, str, Callable]]) -> Iterator[None]:
    """Register ``(module, kind, hook)`` triples (kind ``pre`` or ``post``); always remove."""
    handles = []
    try:
        for module, kind, hook in hooks:
            register = (
                module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
            )
            handles.append(register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_inputs(modules: dict[str, nn.Module], stop_after: str | None = None) -> Iterator[dict]:
    """Record the first positional input of each module into the yielded dict (by name).

    With ``stop_after``, the forward pass is ended by :class:`StopForward` once that module
    has been reached; wrap the forward call in ``run_until_stop``.
    """
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            captured[name] = args[0]
            if name == stop_after:
                raise StopForward

        return hook

    with _registered([(m, "pre", make_hook(n)) for n, m in modules.items()]):
        yield captured


@contextmanager
def capture_outputs(modules: dict[str, nn.Module], stop_after: str | None = None) -> Iterator[dict]:
    """Record each module's output (the first element when it returns a tuple); with
    ``stop_after``, end the pass once that module has produced its output."""
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            captured[name] = output[0] if isinstance(output, tuple) else output
            if name == stop_after:
                raise StopForward

        return hook

    with _registered([(m, "post", make_hook(n)) for n, m in modules.items()]):
        yield captured


@contextmanager
def edit_output(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the module's output ``y`` by ``fn(y)`` while the context is open."""

    def hook(mod: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return fn(output)

    with _registered([(module, "post", hook)]):
        yield


@contextmanager
def replace_last_input(module: nn.Module, values: torch.Tensor) -> Iterator[None]:
    """While open, the first input of ``module`` at the last position is ``values``
    (``(batch, width)``, one row per batch row); gradients flow back into ``values``."""

    def hook(mod: nn.Module, args: tuple) -> tuple:
        patched = args[0].clone()
        patched[:, -1, :] = values.to(patched.device, patched.dtype)
        return (patched, *args[1:])

    with _registered([(module, "pre", hook)]):
        yield


def run_until_stop(forward: Callable[[], object]) -> None:
    """Call ``forward`` and swallow the :class:`StopForward` a capture hook may raise."""
    with suppress(StopForward):
        forward()


CACHE_KWARGS = ("past_key_values", "cache")
"""The names a causal LM's forward takes its key-value cache under (``generate`` passes
``cache`` in recent transformers releases, ``past_key_values`` in earlier ones)."""


def cached_length(kwargs: dict[str, Any]) -> int:
    """Tokens already in the key-value cache a forward call was given (0 without one): a
    cache object's ``get_seq_length()``, or the key length of a legacy tuple cache."""
    for name in CACHE_KWARGS:
        cache = kwargs.get(name)
        if cache is None:
            continue
        length = getattr(cache, "get_seq_length", None)
        if length is not None:
            return int(length())
        if isinstance(cache, (tuple, list)) and cache and cache[0]:
            return int(cache[0][0].shape[-2])
    return 0


def watch_cache(set_continuing: Callable[[bool], None]) -> Callable[..., None]:
    """A model forward pre-hook (register with ``with_kwargs=True``) that calls
    ``set_continuing`` with whether the pass extends a non-empty key-value cache (a
    generation step after the first), for adaptors that carry state across such passes."""

    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        set_continuing(cached_length(kwargs) > 0)

    return hook
