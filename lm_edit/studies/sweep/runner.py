"""The sweep loop: per editor, load the model once, continue one edit stream through the
checkpoints, and evaluate the live model with lm-eval's ``simple_evaluate`` at each.

The unedited model is checkpoint 0: the run of the first editor evaluates it before its
first edit (the editing tasks then score the planned cases), and every editor shares it.

Each editor's stream is one independent run, claimed by the process that works on it
(:mod:`.claims`): several processes, on one machine or on several sharing the folder, may
work on one sweep at once, each taking the editors no other process holds.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lm_edit.paths import values_kept_in
from lm_edit.studies.sweep.claims import claim
from lm_edit.studies.sweep.drift import added_parameters, drift_summary, parameter_drift
from lm_edit.studies.sweep.folder import check_editor_names, inside
from lm_edit.studies.sweep.grid import Run, check_grid, expand
from lm_edit.studies.sweep.identity import (
    editor_model_args,
    model_args_for,
    shared_model_args,
    unclaimed_hyperparameters,
)
from lm_edit.studies.sweep.lock import sweep_folder_lock
from lm_edit.studies.sweep.manifest import UNEDITED, SweepState, checkpoint_dir
from lm_edit.studies.sweep.outputs import RESULTS, VALUES, write_checkpoint

logger = logging.getLogger(__name__)

RESERVED_MODEL_ARGS = {
    "editor": "pass editors with --editors",
    "n_edits": "the largest of --checkpoints sets it",
    "defer_edits": "the sweep defers edits itself",
}


@dataclass
class SweepConfig:
    """Everything a sweep needs; all but ``editors``, ``checkpoints``, ``output_path`` and
    ``overwrite`` are fingerprinted in the manifest."""

    model_args: dict[str, Any]
    editors: list[str]
    checkpoints: list[int]
    tasks: list[str]
    output_path: Path
    device: str | None = None
    batch_size: int | str = 1
    limit: float | None = None
    num_fewshot: int | None = None
    gen_kwargs: str | None = None
    log_samples: bool = False
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    confirm_run_unsafe_code: bool = False
    include_path: list[str] = field(default_factory=list)
    seed: int = 0
    perplexity: bool = False
    ppl_model: str | None = None
    ppl_max_new_tokens: int = 32
    overwrite: bool = False
    grid: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, why in RESERVED_MODEL_ARGS.items():
            if key in self.model_args:
                raise ValueError(f"model_args may not set {key!r} in a sweep: {why}.")
        if "pretrained" not in self.model_args:
            raise ValueError("model_args needs pretrained=<model name or folder>.")
        if not self.editors:
            raise ValueError("--editors is empty: name at least one editor (e.g. rome,memit).")
        if not self.checkpoints or min(self.checkpoints) < 1:
            raise ValueError(f"--checkpoints must be edit counts >= 1, got {self.checkpoints}.")
        if not self.tasks:
            raise ValueError("--tasks is empty.")
        check_editor_names(self.editors)
        unclaimed = unclaimed_hyperparameters(self.editors, self.model_args)
        if unclaimed:
            raise ValueError(
                f"model_args set {', '.join(unclaimed)}, which none of the sweep's editors "
                f"({', '.join(self.editors)}) takes; remove it or add an editor that takes it."
            )
        check_grid(self.grid, self.editors, self.model_args)
        self.checkpoints = sorted(set(self.checkpoints))
        self.output_path = Path(self.output_path)
        if isinstance(self.batch_size, str) and self.batch_size.isdigit():
            self.batch_size = int(self.batch_size)

    def fingerprinted(self) -> dict[str, Any]:
        """The arguments that decide every checkpoint's numbers, ``model_args`` normalised
        (editor hyperparameters are recorded per editor, see :mod:`.identity`)."""
        skip = {"editors", "checkpoints", "output_path", "overwrite", "log_samples", "grid"}
        arguments = {k: v for k, v in asdict(self).items() if k not in skip}
        if not self.metadata:  # sweeps from before --metadata keep their fingerprint
            del arguments["metadata"]
        return {**arguments, "model_args": shared_model_args(self.model_args)}

    @property
    def runs(self) -> list[Run]:
        """The sweep's streams: one per editor and combination of ``--grid`` values."""
        return expand(self.editors, self.grid)

    @property
    def run_names(self) -> list[str]:
        """The runs' names (their folders and manifest keys), in order."""
        return [run.name for run in self.runs]

    def run(self, name: str) -> Run:
        """The run called ``name``."""
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"no run {name!r} in this sweep; runs: {', '.join(self.run_names)}")

    def run_model_args(self, run: Run) -> dict[str, Any]:
        """``model_args`` with the run's grid settings."""
        return {**self.model_args, **run.settings}

    def editor_arguments(self) -> dict[str, dict[str, Any]]:
        """Per run, the hyperparameters ``model_args`` and the grid change (see
        :mod:`.identity`)."""
        return {r.name: editor_model_args(r.editor, self.run_model_args(r)) for r in self.runs}

    @property
    def n_edits(self) -> int:
        """Edits planned per editor: the largest checkpoint."""
        return self.checkpoints[-1]


def load_model(config: SweepConfig, name: str) -> Any:
    """An ``edited-hf`` model for run ``name`` with the sweep's edits planned but none
    applied."""
    from lm_edit.evaluation.model import EditedLM

    run = config.run(name)
    device = {} if config.device is None else {"device": config.device}
    return EditedLM(
        defer_edits=True,
        editor=run.editor,
        n_edits=config.n_edits,
        batch_size=config.batch_size,
        **device,
        **model_args_for(run.editor, config.run_model_args(run)),
    )


def evaluate_live(lm: Any, config: SweepConfig, task_manager: Any) -> dict[str, Any]:
    """Evaluate the live model through lm-eval's ``simple_evaluate``."""
    from lm_eval import simple_evaluate

    return simple_evaluate(
        model=lm,
        model_args={"pretrained": str(config.model_args["pretrained"])},
        tasks=list(config.tasks),
        num_fewshot=config.num_fewshot,
        limit=config.limit,
        gen_kwargs=config.gen_kwargs,
        log_samples=config.log_samples,
        apply_chat_template=config.apply_chat_template,
        fewshot_as_multiturn=config.fewshot_as_multiturn,
        confirm_run_unsafe_code=config.confirm_run_unsafe_code,
        task_manager=task_manager,
        random_seed=config.seed,
        numpy_random_seed=config.seed + 1234,
        torch_random_seed=config.seed + 1234,
        fewshot_random_seed=config.seed + 1234,
    )


class SweepTaskError(ValueError):
    """A task of the sweep cannot be built."""


def check_tasks_load(config: SweepConfig, task_manager: Any) -> None:
    """Build every task once before any edit or evaluation, so a task that cannot load
    (a misspelt name, a benchmark without data offline) fails in seconds, not after the
    edits."""
    try:
        task_manager.load(list(config.tasks))
    except Exception as error:
        raise SweepTaskError(
            f"The sweep's tasks {','.join(config.tasks)} could not be built, so nothing was "
            f"edited or evaluated: {type(error).__name__}: {str(error).rstrip('.')}. Check "
            "the task names (lm_eval ls tasks) and any --metadata; offline, benchmarks need "
            "local copies of their data (lm-edit capability-data <folder>, see "
            "tasks/README.md)."
        ) from error


def build_task_manager(config: SweepConfig) -> Any:
    """lm-eval's TaskManager with lm-edit's tasks, any ``--include_path`` and the tasks'
    ``--metadata`` (built once)."""
    from lm_eval.tasks import TaskManager

    from lm_edit.paths import tasks_dir

    return TaskManager(
        include_path=[str(tasks_dir()), *config.include_path], metadata=config.metadata or None
    )


def language_modelling(lm: Any, config: SweepConfig, scorer: Any) -> dict[str, float] | None:
    """Adjusted perplexity of the live model (``--perplexity``), else None."""
    if not config.perplexity:
        return None
    from lm_edit.studies.sweep.perplexity import adjusted_perplexity

    return adjusted_perplexity(
        lm.model,
        lm.tokenizer,
        score=scorer,
        records=lm.edit_stream.records,
        max_new_tokens=config.ppl_max_new_tokens,
    )


def external_scorer(config: SweepConfig) -> Any:
    """The ``--ppl_model`` scorer, loaded once; None scores with the unedited model."""
    if not (config.perplexity and config.ppl_model):
        return None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained
    from lm_edit.studies.sweep.perplexity import model_scorer

    path = resolve_pretrained(config.ppl_model)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return model_scorer(model, AutoTokenizer.from_pretrained(path))


CheckpointHook = Callable[[str, int, Any], None]
ResultsHook = Callable[[str, int, dict[str, Any]], None]
Evaluate = Callable[[Any, SweepConfig, Any], dict[str, Any]]
LoadModel = Callable[[SweepConfig, str], Any]


@dataclass
class Sweep:
    """One sweep run: its configuration, folder state and the evaluation it uses."""

    config: SweepConfig
    state: SweepState
    task_manager: Any
    evaluate: Evaluate = evaluate_live
    on_checkpoint: CheckpointHook | None = None
    log_results: ResultsHook | None = None
    load: LoadModel | None = None
    events: list[tuple[str, int, str]] = field(default_factory=list)
    scorer: Any = None
    tasks_checked: bool = False

    def run(self) -> list[tuple[str, int, str]]:
        """Run (or resume) every editor no other process holds; return (editor, n_edits,
        "evaluated"/"skipped"/"elsewhere"), "elsewhere" for another process's editor."""
        config = self.config
        names = config.run_names
        total = len(names) * len(config.checkpoints) + 1
        done = sum(self.state.is_done(e, k) for e in names for k in config.checkpoints)
        done += self.state.is_done(UNEDITED, 0)
        self.scorer = external_scorer(config)
        with tqdm(total=total, initial=done, desc="sweep checkpoints", unit="ckpt") as bar:
            for editor in names:
                with claim(self.state.root, editor) as mine:
                    self.state.refresh()
                    if mine:
                        self._run_editor(editor, bar)
                    else:
                        self._elsewhere(editor)
        return self.events

    def _elsewhere(self, editor: str) -> None:
        """Note the checkpoints of an editor another process is running."""
        logger.info("Editor %s is being run by another process: left to it", editor)
        for k in self.config.checkpoints:
            status = "skipped" if self.state.is_done(editor, k) else "elsewhere"
            self.events.append((editor, k, status))

    def _claim_unedited(self, editor: str, stack: ExitStack) -> bool:
        """Whether this run evaluates the unedited model: the first editor's run does, once
        (a claim keeps two processes with their editors in other orders from both doing
        it)."""
        if editor != self.config.run_names[0]:
            return False
        if self.state.is_done(UNEDITED, 0):
            self.events.append((UNEDITED, 0, "skipped"))
            return False
        if not stack.enter_context(claim(self.state.root, UNEDITED)):
            self.events.append((UNEDITED, 0, "elsewhere"))
            return False
        self.state.refresh()
        return not self.state.is_done(UNEDITED, 0)

    def _run_editor(self, editor: str, bar: tqdm) -> None:
        with ExitStack() as stack:
            unedited_todo = self._claim_unedited(editor, stack)
            self._run_stream(editor, unedited_todo, bar)

    def _run_stream(self, editor: str, unedited_todo: bool, bar: tqdm) -> None:
        config, state = self.config, self.state
        todo = [k for k in config.checkpoints if not state.is_done(editor, k)]
        self.events += [(editor, k, "skipped") for k in config.checkpoints if k not in todo]
        if not todo and not unedited_todo:
            logger.info("Editor %s: every checkpoint is finished, skipped", editor)
            return
        lm = (self.load or load_model)(config, editor)
        if not self.tasks_checked:
            check_tasks_load(config, self.task_manager)
            self.tasks_checked = True
        if unedited_todo:
            self._checkpoint(lm, UNEDITED, 0)
            bar.update()
        for n_edits in config.checkpoints:
            if not todo or n_edits > todo[-1]:
                break
            start = time.perf_counter()
            lm.edit_up_to(n_edits)
            if n_edits not in todo:
                logger.info(
                    "Editor %s: re-applied edits up to finished checkpoint %d", editor, n_edits
                )
                continue
            self._checkpoint(lm, editor, n_edits, time.perf_counter() - start)
            bar.update()
        del lm
        gc.collect()

    def _checkpoint(self, lm: Any, editor: str, n_edits: int, step_seconds: float = 0.0) -> None:
        """Evaluate the live model and record the checkpoint (results, then manifest)."""
        folder = checkpoint_dir(self.state.root, editor, n_edits)
        if (folder / RESULTS).exists():
            logger.warning(
                "Redoing %s/%d: its results were written but not recorded", editor, n_edits
            )
        start = time.perf_counter()
        output = self.evaluate(lm, self.config, self.task_manager)
        eval_seconds = time.perf_counter() - start
        records = lm.edit_stream.records if n_edits else []
        drift = parameter_drift(lm.model, records)
        ppl = language_modelling(lm, self.config, self.scorer)
        memory = [r.peak_memory_bytes for r in records if r.peak_memory_bytes is not None]
        entry = {
            "editor": editor,
            "n_edits": n_edits,
            "edit_seconds_total": sum(r.seconds for r in records),
            "edit_seconds_step": step_seconds,
            "peak_memory_bytes": max(memory) if memory else None,
            "eval_seconds": eval_seconds,
            "drift": drift_summary(drift),
            "added_parameters": added_parameters(records),
            "perplexity": ppl,
            "case_ids": [r.case_id for r in lm.edit_session.requests],
        }
        extra = {**entry, "drift_per_matrix": drift, "session": lm.edit_session.manifest()}
        written = write_checkpoint(folder, output, extra)
        path = written[-1]
        if self.log_results is not None:
            self.log_results(editor, n_edits, output)
        entry["results"] = str(path.relative_to(self.state.root))
        entry["files"] = [str(p.relative_to(self.state.root)) for p in written]
        entry["editor_config"] = lm.edit_session.config
        self.state.finish(editor, n_edits, entry)
        self.events.append((editor, n_edits, "evaluated"))
        logger.info("Checkpoint %s/%d written to %s", editor, n_edits, path)
        if self.on_checkpoint is not None:
            self.on_checkpoint(editor, n_edits, lm)


def run_sweep(
    config: SweepConfig,
    task_manager: Any = None,
    on_checkpoint: CheckpointHook | None = None,
    evaluate: Evaluate = evaluate_live,
    log_results: ResultsHook | None = None,
    load: LoadModel | None = None,
) -> tuple[SweepState, list[tuple[str, int, str]]]:
    """Run or resume the sweep described by ``config``, beside any other process working
    on the same sweep; return its state and events. ``log_results(editor, n_edits,
    results)`` sees every evaluated checkpoint's output; ``load`` replaces
    :func:`load_model`."""
    with (
        sweep_folder_lock(config.output_path, shared=not config.overwrite),
        values_kept_in(inside(config.output_path, config.output_path / VALUES)),
    ):
        state = open_state(config)
        sweep = Sweep(
            config,
            state,
            task_manager or build_task_manager(config),
            evaluate=evaluate,
            on_checkpoint=on_checkpoint,
            log_results=log_results,
            load=load,
        )
        return state, sweep.run()


def open_state(config: SweepConfig) -> SweepState:
    """Resume or start the sweep's folder state (refusing a folder of another sweep)."""
    return SweepState.open(
        config.output_path,
        config.fingerprinted(),
        config.overwrite,
        config.editor_arguments(),
    )


def checkpoint_outcomes(events: list[tuple[str, int, str]]) -> dict[str, int]:
    """How many distinct checkpoints were evaluated, found done ("skipped") or left to
    other processes ("elsewhere"); several local workers each report every editor, so a
    checkpoint counts once, by the furthest any worker got with it."""
    order = ("elsewhere", "skipped", "evaluated")
    best: dict[tuple[str, int], str] = {}
    for editor, n_edits, status in events:
        known = best.get((editor, n_edits))
        if known is None or order.index(status) > order.index(known):
            best[(editor, n_edits)] = status
    return {status: sum(s == status for s in best.values()) for status in order}
