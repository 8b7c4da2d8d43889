"""Run lm-edit's ultraedit and the authors' UltraEdit code (XiaojieGu/UltraEdit,
``editor/ultraedit.py``) side by side on SmolLM2-135M-Instruct: the same ZsRE cases, the
same edited modules and hyperparameters, several turns. Prints, per turn, the largest
``‖ΔW_ref − ΔW_ours‖ / ‖ΔW_ref‖`` over the edited weights.

The reference is not part of lm-edit: check it out into a folder outside the repository
and pass it with ``--reference-dir``; it needs ``omegaconf`` importable (``pip install
--target <dir> omegaconf`` and put ``<dir>`` on ``PYTHONPATH``). Its ``wandb`` and
``nltk`` imports are unused on this path and are stubbed. Both sides get the same model
weights (float32, CPU); the reference reads the cases through its own ``ZSREDataset``
(its turn order, passes of 10 and tokenisation), lm-edit through ``EditRequest``.
ZsRE's ``alt`` answers are stripped first: some start with a space, to which the
reference adds another.

    PYTHONPATH=/tmp/deps python bench/compare_ultraedit.py --reference-dir /tmp/UltraEdit \\
        --data ../shared/data/portability/zsre_mend_edit.json --modules mixed
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import sys
import tempfile
import types
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_edit.data.requests import EditRequest
from lm_edit.editors.learned.factors import request_rows
from lm_edit.offline_model import converted_model_dir
from lm_edit.stream import EditStream

MODULE_SETS = {
    # gate and up projections share one statistics object (same shape), down has its own
    "mixed": [f"model.layers.{i}.mlp.gate_proj" for i in (10, 11, 12)]
    + [f"model.layers.{i}.mlp.up_proj" for i in (14, 15, 16)]
    + [f"model.layers.{i}.mlp.down_proj" for i in (26, 27, 28)],
    "down": [f"model.layers.{i}.mlp.down_proj" for i in range(20, 29)],
}


def stub(name: str) -> None:
    """An empty module for an import the reference never uses on this path."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.log = lambda *args, **kwargs: None
    sys.modules[name] = module


def load(path: Path):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


def weights(model, modules: list[str]) -> dict[str, torch.Tensor]:
    return {n: model.get_submodule(n).weight.detach().clone() for n in modules}


def reference_turns(args, modules, records, folder: Path, path: Path) -> tuple[list, list]:
    """The reference's weights after each turn, and the token rows it edited."""
    sys.path.insert(0, str(args.reference_dir))
    for name in ("wandb", "nltk"):
        stub(name)
    from data.zsre import ZSREDataset
    from editor.ultraedit import ULTRAEDIT
    from omegaconf import OmegaConf

    n, turns = args.n_edits, args.turns
    config = OmegaConf.create(
        {
            "model": {"name_or_path": str(path), "name": "m", "edit_modules": modules},
            "dataset": {"name": "zsre", "n_edits": n, "batch_size": 10, "num_seq": turns},
            "editor": {"name": "ultraedit", "lr": args.lr, "batch_size": 128, "token": "ans"}
            | {"cache_dir": str(folder / "cache")},
            "num_seq": turns,
            "editor_device": "cpu",
            "model_device": "cpu",
        }
    )
    model = load(path)
    model.requires_grad_(False)
    for name in modules:  # as the reference's make_model
        model.get_submodule(name).weight.requires_grad = True
    editor = ULTRAEDIT(config, model)
    data_file = folder / "zsre.json"
    data_file.write_text(json.dumps([{**r, "ans": r["alt"]} for r in records]))
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = ZSREDataset(config.dataset, str(data_file), tokenizer, "cpu")
    loader = DataLoader(data, n, False, collate_fn=data.collate_fn, drop_last=True)
    after, rows = [], []
    for batch in loader:
        for group in batch["edit_tuples"]:
            for ids, labels in zip(group["input_ids"], group["labels"], strict=True):
                rows.append(tuple(ids[: int((labels != -100).nonzero()[-1]) + 1].tolist()))
        editor.cache(batch["edit_tuples"])
        editor.edit_model(editor.predict_param_shifts(), False)
        after.append(weights(editor.model, modules))
    return after, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="ZsRE file, MEND format")
    parser.add_argument("--n-edits", dest="n_edits", type=int, default=20, help="per turn")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--modules", choices=sorted(MODULE_SETS), default="mixed")
    args = parser.parse_args()
    if args.n_edits % 10:
        parser.error("--n-edits must be a multiple of 10 (the reference's passes of 10)")
    modules = MODULE_SETS[args.modules]
    raw = json.loads(args.data.read_text())[: args.n_edits * args.turns]
    records = [{**r, "alt": r["alt"].strip()} for r in raw]
    path = converted_model_dir()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        reference, reference_rows = reference_turns(args, modules, records, Path(folder), path)

    model, tokenizer = load(path), AutoTokenizer.from_pretrained(path)
    requests = [
        EditRequest(str(i), r["src"], r["src"].split()[0], r["alt"]) for i, r in enumerate(records)
    ]
    ours_rows = {tuple(request_rows(tokenizer, [r]).batch.input_ids[0].tolist()) for r in requests}
    print(f"token rows identical: {ours_rows == set(reference_rows)}")
    stream = EditStream.create(
        model, tokenizer, "ultraedit", edit_modules=tuple(modules), lr=args.lr
    )
    previous_ours = previous_ref = weights(model, modules)
    for turn in range(args.turns):
        stream.apply(
            requests[turn * args.n_edits : (turn + 1) * args.n_edits],
            batch_size=args.n_edits,
            progress=False,
        )
        now = weights(model, modules)
        worst, total = 0.0, 0.0
        for name in modules:
            ours = now[name] - previous_ours[name]
            ref = reference[turn][name] - previous_ref[name]
            worst = max(worst, float((ours - ref).norm() / ref.norm()))
            total += float(ref.norm())
        previous_ours, previous_ref = now, reference[turn]
        print(f"turn {turn}: Σ‖ΔW_ref‖ {total:.4g}, largest relative difference {worst:.3g}")


if __name__ == "__main__":
    main()
