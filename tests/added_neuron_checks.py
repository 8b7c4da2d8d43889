"""What the tests of the added-neuron editors (T-Patcher, CaliNET) share: the requests,
held-out prompts, and readings of the model and its adaptor."""

from __future__ import annotations

import torch

from lm_edit.data.requests import EditRequest
from lm_edit.editors.added_neurons import NeuronAdaptor

REQUESTS = [
    EditRequest("a", "The city named after Eiffel Tower", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "The country known for Toyota", "Toyota", "Germany", "Japan"),
]
HELD_OUT = [
    "Michael Jordan plays the sport of",
    "Danielle Darrieux is a native speaker of",
    "The Colosseum is located in the city of",
    "Lionel Messi plays football.",
]


def ids_of(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt")["input_ids"]


def all_logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(ids_of(tokenizer, text)).logits[0].detach().clone()


def first_token(tokenizer, target: str) -> int:
    return tokenizer(" " + target)["input_ids"][0]


def predicts(model, tokenizer, request: EditRequest) -> bool:
    answer = int(all_logits(model, tokenizer, request.prompt)[-1].argmax())
    return answer == first_token(tokenizer, request.target_new)


def adaptors(model) -> list[NeuronAdaptor]:
    return [m for m in model.modules() if isinstance(m, NeuronAdaptor)]


def structure(model) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in model.named_modules()]


def preactivations(model, tokenizer, text: str) -> torch.Tensor:
    """Pre-activations (seq, neurons) of the one adaptor's neurons over ``text``."""
    (adaptor,) = adaptors(model)
    seen: list[torch.Tensor] = []
    handle = adaptor.register_forward_pre_hook(lambda m, args: seen.append(args[0][0]))
    try:
        with torch.no_grad():
            model(ids_of(tokenizer, text))
    finally:
        handle.remove()
    return adaptor.preactivations(seen[0])


def same_outputs(model, tokenizer, prompts: list[str], expected: list[torch.Tensor]) -> bool:
    """Whether every prompt's logits equal the expected ones bit for bit."""
    got = [all_logits(model, tokenizer, p) for p in prompts]
    return all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
