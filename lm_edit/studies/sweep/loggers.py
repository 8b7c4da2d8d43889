"""lm-eval's Weights & Biases logger for a sweep: one W&B run per editor, one step per
checkpoint (the step is the number of edits), the unedited model logged as step 0 of each."""

from __future__ import annotations

import copy
from typing import Any

from lm_edit.studies.sweep.manifest import UNEDITED


def require_wandb() -> None:
    """Fail early, before any model is loaded, when ``--wandb_args`` is given without wandb."""
    try:
        import wandb  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            "--wandb_args needs the wandb package: pip install 'wandb>=0.13.6' "
            "(the same extra lm_eval's --wandb_args needs)."
        ) from error


class WandbSweepLogger:
    """Log each checkpoint's lm-eval results with ``lm_eval.loggers.WandbLogger``."""

    def __init__(self, init_args: dict[str, Any], config_args: dict[str, Any] | None = None):
        require_wandb()
        self.init_args = dict(init_args)
        self.config_args = dict(config_args or {})
        self.editor: str | None = None
        self.logger: Any = None
        self.unedited: dict[str, Any] | None = None

    def __call__(self, editor: str, n_edits: int, results: dict[str, Any]) -> None:
        """Log one checkpoint; the unedited results are held until an editor's run opens."""
        if editor == UNEDITED:
            self.unedited = copy.deepcopy(results)
            if self.logger is not None:
                self._log(0, self.unedited)
            return
        if editor != self.editor:
            self._open(editor)
            if self.unedited is not None:
                self._log(0, self.unedited)
        self._log(n_edits, results)

    def close(self) -> None:
        """Finish the open W&B run, if any."""
        if self.logger is not None:
            self.logger.run.finish()
            self.logger = None

    def _open(self, editor: str) -> None:
        from lm_eval.loggers import WandbLogger

        self.close()
        name = self.init_args.get("name")
        init_args = {**self.init_args, "name": f"{name}-{editor}" if name else editor}
        init_args.setdefault("group", name or "lm-edit-sweep")
        self.logger = WandbLogger(init_args, {**self.config_args, "editor": editor})
        self.editor = editor

    def _log(self, step: int, results: dict[str, Any]) -> None:
        self.logger.step = step
        self.logger.post_init(results)
        self.logger.log_eval_result()
        if results.get("samples"):
            self.logger.log_eval_samples(results["samples"])
