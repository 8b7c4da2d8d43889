"""One process of the data-parallel test (tests/test_data_parallel.py): edit a saved tiny
model through ``edited-hf``, score ``counterfact_edit`` and write this rank's weights
digest (and, on rank 0, lm-eval's gathered results) to ``<out>/rank<i>.json``. Run under
``torchrun`` or alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(model_dir: str, out_dir: str, editor: str) -> None:
    from accelerate import PartialState
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lm_edit.core.fingerprint import weights_digest
    from lm_edit.editors.registry import implementation_of
    from lm_edit.evaluation.model import EditedLM
    from lm_edit.paths import tasks_dir

    settings = implementation_of(editor).quick_settings
    lm = EditedLM(
        pretrained=model_dir, device="cpu", editor=editor, n_edits=3, edit_data="demo", **settings
    )
    results = simple_evaluate(
        model=lm,
        tasks=["counterfact_edit"],
        task_manager=TaskManager(include_path=str(tasks_dir())),
    )
    rank = PartialState().process_index
    record = {
        # lm-eval gathers every rank's scores on rank 0 and returns None elsewhere
        "results": results["results"]["counterfact_edit"] if results else None,
        "rank": lm.rank,
        "world_size": lm.world_size,
        "digest": weights_digest(lm.model),
        "agreed_digest": lm.edit_session.weights_digest,
        "processes": PartialState().num_processes,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record, sort_keys=True, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
