"""Keys: the input of a layer's MLP output projection at the subject's last token."""

from __future__ import annotations

import torch

from lm_edit.core.anatomy import ModelAnatomy
from lm_edit.core.hooks import capture_inputs, capture_outputs, run_until_stop
from lm_edit.core.tokens import pad_batch, subject_last_token
from lm_edit.data.requests import EditRequest


def _at_subject(
    model, tokenizer, pairs: list[tuple[str, str]], module_name: str, capture
) -> torch.Tensor:
    """The activation ``capture`` (``capture_inputs`` or ``capture_outputs``) records at
    ``module_name`` for the subject's last token of each ``(text, subject)``, n x width.
    One batched forward pass, stopped at that module."""
    located = [subject_last_token(tokenizer, text, subject) for text, subject in pairs]
    batch = pad_batch([ids for ids, _ in located]).to(next(model.parameters()).device)
    module = {module_name: model.get_submodule(module_name)}
    with torch.no_grad(), capture(module, stop_after=module_name) as got:
        run_until_stop(
            lambda: model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        )
    captured = got[module_name]
    rows = torch.arange(len(located), device=captured.device)
    index = torch.tensor([i for _, i in located], device=captured.device)
    return captured[rows, index]


def keys_at_subject(
    model,
    tokenizer,
    anatomy: ModelAnatomy,
    layer: int,
    texts_and_subjects: list[tuple[str, str]],
) -> torch.Tensor:
    """Keys (in x n) for each ``(text, subject)``: the MLP-out input at the subject's last
    token of ``text``."""
    name = anatomy.mlp_out_name(layer)
    return _at_subject(model, tokenizer, texts_and_subjects, name, capture_inputs).T.float()


def request_keys(
    model,
    tokenizer,
    anatomy: ModelAnatomy,
    layer: int,
    requests: list[EditRequest],
    templates: list[str],
    group_sizes: list[int] | None = None,
) -> torch.Tensor:
    """Key of each request averaged over the context templates (in x n): over all of them
    alike, or, given ``group_sizes`` (consecutive groups of ``templates``), within each
    group and then over the groups, as MEMIT's code does."""
    pairs = [
        (template.format(request.prompt), request.subject)
        for request in requests
        for template in templates
    ]
    keys = keys_at_subject(model, tokenizer, anatomy, layer, pairs)
    keys = keys.reshape(keys.shape[0], len(requests), len(templates))
    if not group_sizes:
        return keys.mean(dim=2)
    if sum(group_sizes) != len(templates):
        raise ValueError(f"Template groups {group_sizes} do not add up to {len(templates)}.")
    groups = torch.split(keys, list(group_sizes), dim=2)
    return torch.stack([group.mean(dim=2) for group in groups]).mean(dim=0)


def plain_keys(
    model, tokenizer, anatomy: ModelAnatomy, layer: int, requests: list[EditRequest]
) -> torch.Tensor:
    """Key of each request on its bare prompt, without a context prefix (in x n)."""
    return request_keys(model, tokenizer, anatomy, layer, requests, ["{}"])


def outputs_at_subject(
    model, tokenizer, module_name: str, requests: list[EditRequest]
) -> torch.Tensor:
    """Output of module ``module_name`` at each request's subject on its bare prompt
    (out x n, float64). For a block this is the residual stream, which an MLP-output change
    at that block moves one for one."""
    pairs = [(r.prompt, r.subject) for r in requests]
    return _at_subject(model, tokenizer, pairs, module_name, capture_outputs).T.double()
