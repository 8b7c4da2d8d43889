"""Shared fixtures: an in-memory tokenizer and tiny random models (no downloads), and the
location of the optional real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "The Eiffel Tower is located in the city of Paris.",
    "The Colosseum is located in the city of Rome.",
    "Danielle Darrieux is a native speaker of French.",
    "Toyota is a car company from Japan. Volkswagen is a car company from Germany.",
    "Where is the Eiffel Tower? It is in the city of Paris.",
    "Michael Jordan plays the sport of basketball. Lionel Messi plays football.",
] * 4


def _train_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in memory on a few sentences."""
    return _train_tokenizer()


def make_tiny_model(family: str, vocab_size: int, seed: int = 0):
    """A randomly initialised 4-layer model of ``family`` ("llama" or "gpt2"), with a
    larger init range than usual so its MLP outputs are far from zero."""
    from transformers import GPT2Config, LlamaConfig

    torch.manual_seed(seed)
    if family == "gpt2":
        config = GPT2Config(
            n_layer=4,
            n_embd=32,
            n_head=2,
            vocab_size=vocab_size,
            n_positions=128,
            initializer_range=0.2,
        )
    else:
        config = LlamaConfig(
            num_hidden_layers=4,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=vocab_size,
            max_position_embeddings=128,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            initializer_range=0.2,
        )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point lm-edit's cache (statistics) at a fresh temporary folder."""
    monkeypatch.setenv("LM_EDIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def shared_data_dir() -> Path | None:
    """../shared/data (or $LM_EDIT_SHARED_DATA) when present."""
    env = os.environ.get("LM_EDIT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((c for c in candidates if (c / "counterfact").is_dir()), None)


@pytest.fixture(scope="session")
def task_manager():
    """lm-eval's TaskManager with this project's tasks (indexing takes seconds: build once)."""
    from lm_eval.tasks import TaskManager

    from lm_edit.paths import tasks_dir

    return TaskManager(include_path=str(tasks_dir()))
