"""MEND and KE checkpoints: one ``torch.save`` file per training folder, read back with
``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, dicts, lists, numbers and strings:

* ``format`` and ``format_version``: :data:`FORMAT` and :data:`FORMAT_VERSION`;
* ``base``: the identity of the model it was trained for (:func:`model_identity`): model
  type, depth, hidden sizes, vocabulary, every edited weight's name and (in, out) shape,
  a fingerprint of those names and shapes, and the digest of all the model's weights;
* ``network``: what rebuilds the network (``rank``, ``n_hidden``, ``edit_lr``, ``seed``);
* ``state``: the network's parameters and normalisation statistics;
* ``step``, ``settings``, ``train_data`` and ``training`` (optimiser and random states,
  validation history): what resuming the run needs.

An editor loads a checkpoint only for a model with the same identity (the weights' digest
aside: edits change the weights) and for the same edited weights; anything else is
refused with the mismatch named.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lm_edit.atomic import save_bytes
from lm_edit.core.fingerprint import weights_digest
from lm_edit.editors.config import model_facts
from lm_edit.editors.learned.factors import EditedWeight
from lm_edit.editors.learned.ke_network import KeNetwork
from lm_edit.editors.learned.network import MendNetwork


@dataclass(frozen=True)
class CheckpointKind:
    """What tells one learned editor's checkpoints apart: the editor, the format name and
    version written into every checkpoint, and the file's name in a training folder."""

    editor: str
    format: str
    version: int
    file: str
    caches: tuple[str, ...] = ()
    """Other files a run keeps in its folder (rebuilt when missing or stale)."""

    @property
    def command(self) -> str:
        """The command that writes such checkpoints."""
        return f"lm-edit train {self.editor}"

    @property
    def train_hint(self) -> str:
        """How to make a checkpoint of this kind."""
        return (
            f"{self.command} --model_args pretrained=<this model> --train_data <edit data> "
            "--output <folder>"
        )


MEND_CHECKPOINT = CheckpointKind("mend", "lm-edit-mend", 1, "mend.pt")
KE_CHECKPOINT = CheckpointKind("ke", "lm-edit-ke", 1, "ke.pt")
FORMAT = MEND_CHECKPOINT.format
FORMAT_VERSION = MEND_CHECKPOINT.version
CHECKPOINT_FILE = MEND_CHECKPOINT.file
"""The checkpoint's name inside a training folder (``editor_checkpoint=<folder>``)."""
TRAIN_HINT = MEND_CHECKPOINT.train_hint


class CheckpointError(ValueError):
    """A learned editor's checkpoint that is missing, unreadable or made for something
    else."""


def base_identity(model: nn.Module) -> dict[str, Any]:
    """What any learned editor's checkpoint must agree with: the model's shape (type,
    depth, widths, vocabulary) and, to warn when it differs, the digest of its weights."""
    head = model.get_output_embeddings()
    vocab = head.weight.shape[0] if head is not None else model.config.vocab_size
    return {
        **model_facts(model),
        "vocab_size": int(vocab),
        "weights_digest": weights_digest(model),
    }


def model_identity(model: nn.Module, weights: list[EditedWeight]) -> dict[str, Any]:
    """What a MEND checkpoint must agree with: the model's shape and its edited weights."""
    listed = [[w.name, w.shape[0], w.shape[1]] for w in weights]
    fingerprint = hashlib.sha256(json.dumps(listed).encode()).hexdigest()[:16]
    return {
        **base_identity(model),
        "weights": listed,
        "weights_fingerprint": fingerprint,
    }


def canonical(value: Any) -> Any:
    """``value`` rebuilt so that equal checkpoints pickle to equal bytes: strings interned
    (pickle writes a string once per object, so a string read back from an earlier
    checkpoint would otherwise be written again), tensors as contiguous CPU copies."""
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(v) for v in value)
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True).contiguous()
    return value


def save_checkpoint(
    checkpoint: dict[str, Any], folder: Path, kind: CheckpointKind = MEND_CHECKPOINT
) -> Path:
    """Write ``checkpoint`` to ``folder/<kind.file>`` atomically (temp file, then rename);
    equal checkpoints give equal bytes (:func:`canonical`)."""
    buffer = io.BytesIO()
    torch.save(canonical(checkpoint), buffer)
    path = folder / kind.file
    save_bytes(buffer.getvalue(), path)
    return path


def read_checkpoint(folder: str | Path, kind: CheckpointKind = MEND_CHECKPOINT) -> dict[str, Any]:
    """The checkpoint in ``folder``, its format and version checked."""
    folder = Path(folder).expanduser()
    path = folder / kind.file
    label = kind.editor.upper()
    if not folder.is_dir():
        raise CheckpointError(
            f"editor_checkpoint={str(folder)!r} is not a folder. Train one with "
            f"`{kind.train_hint}` and pass that folder."
        )
    if not path.is_file():
        raise CheckpointError(
            f"editor_checkpoint={str(folder)!r} holds no {kind.file}: it is not a folder "
            f"written by `{kind.command}` (or its run has not saved a checkpoint yet)."
        )
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # any unreadable file is refused the same way
        raise CheckpointError(f"{path} cannot be read as a {label} checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != kind.format:
        raise CheckpointError(f"{path} is not an lm-edit {label} checkpoint.")
    version = checkpoint.get("format_version")
    if version != kind.version:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, but this lm-edit reads version "
            f"{kind.version}; retrain it with `{kind.command}` (or use the lm-edit version "
            "that wrote it)."
        )
    return checkpoint


_MODEL_FACTS = ("model_type", "num_layers", "hidden_size", "intermediate_size", "vocab_size")


def check_base_model(
    saved: dict[str, Any],
    current: dict[str, Any],
    where: str,
    kind: CheckpointKind = MEND_CHECKPOINT,
) -> None:
    """Refuse a checkpoint trained for a model of another type or shape."""
    for key in _MODEL_FACTS:
        if saved.get(key) != current.get(key):
            raise CheckpointError(
                f"{where} was trained for another base model: {key} is {saved.get(key)!r} "
                f"there but {current.get(key)!r} here. Train one for this model with "
                f"`{kind.train_hint}`."
            )


def check_identity(
    saved: dict[str, Any],
    current: dict[str, Any],
    where: str,
    kind: CheckpointKind = MEND_CHECKPOINT,
) -> None:
    """Refuse a MEND or KE checkpoint trained for another model or other edited weights."""
    check_base_model(saved, current, where, kind)
    names = [w[0] for w in saved["weights"]]
    wanted = [w[0] for w in current["weights"]]
    if names != wanted:
        raise CheckpointError(
            f"{where} edits other weights (other layers or modules): it was trained for "
            f"{', '.join(names)}, but these settings edit {', '.join(wanted)}. Pass the "
            "layers and modules it was trained with, or train a network for these."
        )
    if saved.get("weights_fingerprint") != current.get("weights_fingerprint"):
        shapes = {w[0]: (w[1], w[2]) for w in saved["weights"]}
        mine = {w[0]: (w[1], w[2]) for w in current["weights"]}
        differ = [f"{n} {shapes[n]} there, {mine[n]} here" for n in names if shapes[n] != mine[n]]
        raise CheckpointError(
            f"{where} was trained for weights of other shapes ({'; '.join(differ)}); "
            "train a network for this model."
        )


def build_network(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> MendNetwork:
    """The network a checkpoint holds, in eval mode on ``device``."""
    spec = checkpoint["network"]
    shapes = {w[0]: (int(w[1]), int(w[2])) for w in checkpoint["base"]["weights"]}
    network = MendNetwork(shapes, spec["rank"], spec["n_hidden"], spec["edit_lr"], spec["seed"])
    try:
        network.load_state_dict(checkpoint["state"])
    except RuntimeError as error:
        raise CheckpointError(f"The checkpoint's network does not load: {error}") from error
    return network.to(device).eval()


def build_ke_network(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> KeNetwork:
    """The KE network a checkpoint holds, in eval mode on ``device``."""
    spec = checkpoint["network"]
    shapes = {w[0]: (int(w[1]), int(w[2])) for w in checkpoint["base"]["weights"]}
    embedding = torch.zeros(int(spec["vocab"]), int(spec["embedding_dim"]))
    network = KeNetwork(
        shapes,
        embedding,
        spec["hidden_dim"],
        spec["condition_dim"],
        spec["max_scale"],
        spec["seed"],
        tuple(spec.get("stored_transposed", ())),
    )
    try:
        network.load_state_dict(checkpoint["state"])
    except RuntimeError as error:
        raise CheckpointError(f"The checkpoint's network does not load: {error}") from error
    return network.to(device).eval()


def network_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """A trained module's tensors as a plain dict of CPU copies."""
    return {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
