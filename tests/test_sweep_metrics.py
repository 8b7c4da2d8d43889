"""Parameter drift and adjusted perplexity on known inputs and a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from lm_edit.core.record import EditRecord, RestoreTensor, earliest_originals
from lm_edit.studies.sweep.drift import (
    drift_summary,
    matrix_drift,
    parameter_drift,
)
from lm_edit.studies.sweep.perplexity import adjusted_perplexity, distinct_2
from tests.conftest import make_tiny_model


def test_matrix_drift_known_values():
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert matrix_drift(w, w) == {"pearson_r": pytest.approx(1.0), "relative_frobenius": 0.0}
    flipped = matrix_drift(w, -w)
    assert flipped["pearson_r"] == pytest.approx(-1.0)
    assert flipped["relative_frobenius"] == pytest.approx(2.0)
    shifted = matrix_drift(w, w + 1)
    assert shifted["pearson_r"] == pytest.approx(1.0)
    assert shifted["relative_frobenius"] == pytest.approx(2 / math.sqrt(30))


def test_drift_uses_the_earliest_original(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    name = "model.layers.2.mlp.down_proj.weight"
    param = model.get_parameter(name)
    first = param.detach().clone()
    second = first * 3
    records = [
        EditRecord("x", ["a"], [RestoreTensor(name, first)]),
        EditRecord("x", ["b"], [RestoreTensor(name, second)]),
    ]
    assert earliest_originals(records)[name] is first
    with torch.no_grad():
        param.mul_(2)
    (row,) = parameter_drift(model, records)
    assert row["layer"] == 2 and row["parameter"] == name
    assert row["relative_frobenius"] == pytest.approx(1.0)
    assert drift_summary([]) == {"pearson_r": None, "relative_frobenius": None}


def test_distinct_2():
    assert distinct_2([5, 5, 5, 5, 5]) == pytest.approx(0.25)
    assert distinct_2([1, 2, 3, 4]) == 1.0
    assert distinct_2([7]) == 1.0


def test_adjusted_perplexity_scores_with_the_restored_original(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    name = "model.layers.1.mlp.down_proj.weight"
    original = model.get_parameter(name).detach().clone()
    prompts = ["The Eiffel Tower is located in", "Toyota is a car company"]
    unedited = adjusted_perplexity(model, tiny_tokenizer, prompts=prompts, max_new_tokens=5)
    record = EditRecord("x", ["a"])
    with torch.no_grad():
        record.snapshot(model, name).add_(0.5)
    edited = model.get_parameter(name).detach().clone()
    assert torch.equal(record.originals[name], original)
    scored = adjusted_perplexity(
        model, tiny_tokenizer, records=[record], prompts=prompts, max_new_tokens=5
    )
    assert scored["adjusted_ppl"] == pytest.approx(scored["ppl"] / scored["distinct_2"])
    assert scored["ppl"] != pytest.approx(unedited["ppl"])
    assert torch.equal(model.get_parameter(name), edited)
