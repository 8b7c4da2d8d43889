"""Caches know what they hold: a truncated, empty, garbage, mis-shaped, tampered-with or
non-finite file of any cache (key statistics, derived inverse and projector, v*, sampled
text) is reported by name, deleted and rebuilt to what a fresh run computes; the model
fingerprint sees every byte; temporary files of killed writers are removed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import lm_edit
from lm_edit.atomic import temp_prefix
from lm_edit.core.anatomy import resolve_anatomy
from lm_edit.core.cache_files import load_cached, save_cached
from lm_edit.core.stats import StatsSpec, load_texts, model_fingerprint, second_moments
from lm_edit.data.requests import EditRequest
from tests.conftest import make_tiny_model

SETTINGS = {
    "v_num_grad_steps": 3,
    "stats_source": "model",
    "stats_model_samples": 8,
    "stats_max_length": 24,
    "template_spec": [[3, 2]],
    "layers": [1],
}
ALPHAEDIT = {"nullspace_threshold": 0.5, "nullspace_relative": True}
SPEC = StatsSpec(source="model", model_samples=8, max_length=24)
REQUEST = EditRequest(
    "a", "The Eiffel Tower is located in the city of", "The Eiffel Tower", "Rome", "Paris"
)
EDITED = "model.layers.1.mlp.down_proj.weight"
STATS = "layer1-model-n8-len24-seed0"
FILES = {
    "stats": f"stats/*/{STATS}.pt",
    "inverse": f"stats/*/{STATS}.inverse-ridge0.0001.pt",
    "projector": f"stats/*/{STATS}.nullspace-rel0.5.pt",
    "values": "values/*/*.pt",
    "texts": "stats/*/texts-model-n8-len24-seed0.json",
}
CORRUPTIONS = [
    "truncated",
    "empty",
    "garbage",
    "wrong_shape",
    "wrong_dtype",
    "zeros_bad_checksum",
    "nan",
]


def _edited_weight(tokenizer, editor: str, **extra: Any) -> torch.Tensor:
    model = make_tiny_model("llama", len(tokenizer))
    lm_edit.edit(model, tokenizer, REQUEST, editor, **SETTINGS, **extra)
    return model.get_parameter(EDITED).detach().clone()


def _statistics(tokenizer) -> torch.Tensor:
    model = make_tiny_model("llama", len(tokenizer))
    return second_moments(model, tokenizer, resolve_anatomy(model), [1], SPEC)[1]


def _texts(tokenizer) -> list[str]:
    model = make_tiny_model("llama", len(tokenizer))
    return load_texts(model, tokenizer, "model", SPEC, model_fingerprint(model))


RUNS: dict[str, Callable[[Any], Any]] = {
    "stats": _statistics,
    "texts": _texts,
    "inverse": lambda tok: _edited_weight(tok, "rome", cache_values=True),
    "values": lambda tok: _edited_weight(tok, "rome", cache_values=True),
    "projector": lambda tok: _edited_weight(tok, "alphaedit", **ALPHAEDIT),
}


@pytest.fixture(scope="module")
def reference(tiny_tokenizer, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """A cache filled by fresh runs of every kind, and what those runs returned."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LM_EDIT_CACHE", str(cache))
        results = {kind: run(tiny_tokenizer) for kind, run in RUNS.items()}
    assert all(len(list(cache.glob(pattern))) == 1 for pattern in FILES.values())
    return cache, results


@pytest.fixture
def cache_copy(reference, tmp_path, monkeypatch, caplog) -> Path:
    """A private copy of the reference cache, with lm-edit's warnings captured."""
    cache = tmp_path / "cache"
    shutil.copytree(reference[0], cache)
    monkeypatch.setenv("LM_EDIT_CACHE", str(cache))
    monkeypatch.setattr(logging.getLogger("lm_edit"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="lm_edit")
    return cache


def _tamper(value: Any, how: str) -> Any:
    """``value`` (a tensor, a dict holding tensors, or a list of texts) mis-shaped, of the
    wrong type, zeroed or turned to NaN."""
    if isinstance(value, dict):
        return {k: _tamper(v, how) if torch.is_tensor(v) else v for k, v in value.items()}
    if isinstance(value, list):
        changed = {
            "wrong_shape": value[:-1],
            "wrong_dtype": list(range(len(value))),
            "zeros": [""] * len(value),
        }
        return changed.get(how, [float("nan")] * len(value))
    if how == "wrong_shape":
        return value[..., :-1].clone()
    if how == "wrong_dtype":
        return value.to(torch.int64)
    return torch.zeros_like(value) if how == "zeros" else torch.full_like(value, float("nan"))


BROKEN: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: bytes(range(256)) * 8,
}


def _corrupt(path: Path, how: str) -> None:
    """Damage the file at ``path``: its bytes, or its value rewritten with a valid checksum
    (``zeros_bad_checksum``: zeros, then the checksum spoilt)."""
    if how in BROKEN:
        path.write_bytes(BROKEN[how](path.read_bytes()))
        return
    value = load_cached(path, lambda _: None)
    save_cached(_tamper(value, how.removesuffix("_bad_checksum")), path)
    if how == "zeros_bad_checksum":
        header, _, payload = path.read_bytes().partition(b"\n")
        magic, _, size = header.split(b" ")
        path.write_bytes(b" ".join([magic, b"sha256=" + b"0" * 64, size]) + b"\n" + payload)


def _equal(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if torch.is_tensor(a) else a == b


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("kind", list(FILES))
def test_a_bad_cache_file_is_named_deleted_and_rebuilt(
    kind, how, reference, cache_copy, tiny_tokenizer, caplog
):
    (path,) = cache_copy.glob(FILES[kind])
    _corrupt(path, how)
    result = RUNS[kind](tiny_tokenizer)
    assert _equal(result, reference[1][kind])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warnings if str(path) in m], warnings
    caplog.clear()
    assert load_cached(path, lambda _: None) is not None
    assert not caplog.records


def test_the_fingerprint_sees_the_middle_of_a_tensor(tiny_tokenizer):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    before = model_fingerprint(model)
    weight = model.get_parameter("model.layers.0.mlp.down_proj.weight").view(-1)
    with torch.no_grad():
        weight[600:1400] *= 3
    assert model_fingerprint(model) != before


def test_statistics_of_a_changed_model_are_not_reused(
    tiny_tokenizer, cache_copy, tmp_path, monkeypatch
):
    model = make_tiny_model("llama", len(tiny_tokenizer))
    with torch.no_grad():
        model.get_parameter("model.layers.0.mlp.down_proj.weight").view(-1)[600:1400] *= 3
    reused = second_moments(model, tiny_tokenizer, resolve_anatomy(model), [1], SPEC)[1]
    monkeypatch.setenv("LM_EDIT_CACHE", str(tmp_path / "fresh"))
    fresh = second_moments(model, tiny_tokenizer, resolve_anatomy(model), [1], SPEC)[1]
    assert torch.equal(reused, fresh)


def test_temporary_files_of_killed_writers_are_removed(tiny_tokenizer, cache_copy):
    (stats_file,) = cache_copy.glob(FILES["stats"])
    folder = stats_file.parent
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    mine = temp_prefix(stats_file.name)
    dead = mine.replace(f"~{os.getpid()}@", f"~{int(finished.stdout)}@")
    elsewhere = mine.replace("@", "@another-host.", 1)
    temps = {
        "dead writer": (folder / f"{dead}a1b2c3d4", True),
        "live writer": (folder / f"{mine}e5f6g7h8", False),
        "old file of a live writer": (folder / f"{mine}old12345", True),
        "another host's writer": (folder / f"{elsewhere}x1y2z3w4", False),
        "dead writer's folder": (folder / f"{dead}dir12345", True),
    }
    for name, (path, _) in temps.items():
        if "folder" in name:
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"partial")
        else:
            path.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(temps["old file of a live writer"][0], (an_hour_ago, an_hour_ago))
    _statistics(tiny_tokenizer)
    left = {name for name, (path, _) in temps.items() if path.exists()}
    assert left == {name for name, (_, stale) in temps.items() if not stale}
