"""``lm-edit``: the project's own commands (evaluation itself runs through ``lm_eval``).

lm-edit editors                       list editors and their descriptions
lm-edit data demo --n 5               load an edit data set: detected format, cases
lm-edit stats smollm2-135m --editor rome
                                      precompute key statistics into the cache
lm-edit model smollm2-135m            print the local folder of the demo model
lm-edit capability-data ../shared/data/capability tests/fixtures/capability
                                      build the datasets cache of the capability
                                      benchmarks from local copies (offline runs)
lm-edit lite-ids ../shared/data/capability
                                      re-run the edit_capability_lite selection rule
lm-edit capability-compare results/unedited results/edited
                                      capability scores before and after editing
lm-edit sweep --model_args pretrained=smollm2-135m,edit_data=zsre --editors rome,memit \
  --checkpoints 1,10,50 --tasks zsre_edit,mmlu_high_school_geography --output_path runs/s1
                                      sequential-editing study: evaluate at each checkpoint
lm-edit sweep ... --workers 2          the same sweep over two local processes (one GPU
                                      each); --slurm partition=gpu submits Slurm jobs
lm-edit sweep ... --editors grace,rome --grid eps=0.5,1,3
                                      one GRACE run per eps (ROME, without eps, runs once)
lm-edit report runs/s1 --output docs/s1
                                      tables, plots, leaderboard (Markdown and HTML)
lm-edit save --model_args pretrained=smollm2-135m,editor=rome,n_edits=5 --output edited/
                                      write the edited model for lm_eval --model hf
lm-edit train mend --model_args pretrained=gpt2-xl --train_data zsre --output mend-gpt2-xl/
                                      train MEND's network (resumable); then edit with
                                      editor=mend,editor_checkpoint=mend-gpt2-xl/
                                      (lm-edit train ke ...: KE's network, the same way)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _editors(_: argparse.Namespace) -> int:
    from lm_edit.editors import known_editors
    from lm_edit.editors.config import load_editor_yaml

    for name in known_editors():
        print(f"{name:12s} {load_editor_yaml(name).get('description', '')}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from lm_edit.data.loading import load_edit_requests, select_requests

    requests = load_edit_requests(args.spec, split=args.split)
    print(f"{len(requests)} cases")
    for request in select_requests(requests, min(args.n, len(requests)), args.seed):
        true = f" (was {request.target_true!r})" if request.target_true else ""
        print(
            f"- {request.case_id}: {request.prompt!r} -> {request.target_new!r}{true}; "
            f"{len(request.rephrases)} rephrases, {len(request.locality)} locality, "
            f"{len(request.portability)} portability probes"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_edit.offline_model import resolve_pretrained
    from lm_edit.stream import EditStream

    path = resolve_pretrained(args.pretrained)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    overrides = dict(item.split("=", 1) for item in args.set)
    stream = EditStream.create(model, tokenizer, args.editor, **overrides)
    if not hasattr(stream.editor, "prepare"):
        raise ValueError(f"Editor {args.editor!r} uses no key statistics.")
    stream.editor.prepare(model, tokenizer)
    print("statistics cached for layers", sorted(stream.editor.covariances))
    return 0


def _model(args: argparse.Namespace) -> int:
    from lm_edit.offline_model import resolve_pretrained

    print(resolve_pretrained(args.pretrained))
    return 0


def _capability_data(args: argparse.Namespace) -> int:
    from lm_edit.studies.capability.offline import build_offline_cache, cache_root

    names = args.only.split(",") if args.only else None
    report = build_offline_cache(args.sources, names, args.cache_dir)
    print(f"datasets cache: {cache_root(args.cache_dir)}")
    for name, result in report.items():
        if isinstance(result, str):
            print(f"{name:15s} {result}")
        else:
            print(f"{name:15s} {len(result)} config(s)")
    return 0


def _capability_compare(args: argparse.Namespace) -> int:
    from lm_edit.studies.capability.compare import comparison_markdown

    print(comparison_markdown(args.unedited, args.edited), end="")
    return 0


def _lite_ids(args: argparse.Namespace) -> int:
    import json

    from lm_edit.studies.capability.lite import lite_ids_path, record

    text = json.dumps(record(args.source), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = lite_ids_path().read_text(encoding="utf-8") == text
        print("recorded ids match the rule" if same else "recorded ids DIFFER from the rule")
        return 0 if same else 1
    from lm_edit.atomic import save_text

    out = args.out or lite_ids_path()
    save_text(text, out)
    print(f"wrote {out}")
    return 0


def _sweep_config(args: argparse.Namespace) -> Any:
    from lm_eval._cli.utils import key_val_to_dict

    from lm_edit.studies.sweep.grid import parse_grid
    from lm_edit.studies.sweep.runner import SweepConfig

    return SweepConfig(
        model_args=key_val_to_dict(args.model_args),
        editors=_csv(args.editors),
        checkpoints=[int(k) for k in _csv(args.checkpoints)],
        tasks=_csv(args.tasks),
        output_path=args.output_path,
        device=args.device,
        batch_size=args.batch_size,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        gen_kwargs=args.gen_kwargs,
        log_samples=args.log_samples,
        apply_chat_template=args.apply_chat_template,
        fewshot_as_multiturn=args.fewshot_as_multiturn,
        confirm_run_unsafe_code=args.confirm_run_unsafe_code,
        include_path=args.include_path,
        seed=args.seed,
        perplexity=args.perplexity,
        ppl_model=args.ppl_model,
        ppl_max_new_tokens=args.ppl_max_new_tokens,
        overwrite=args.overwrite,
        grid=parse_grid(args.grid or []),
        metadata=args.metadata,
    )


def _sweep(args: argparse.Namespace) -> int:
    import signal

    config = _sweep_config(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}.")
    if args.slurm is not None or (args.workers or 1) > 1:
        return _sweep_workers(args, config)
    from lm_edit.studies.sweep.runner import run_sweep

    wandb = _wandb_logger(args)
    try:
        _, events = run_sweep(config, log_results=wandb)
    except KeyboardInterrupt:
        return _interrupted(config.output_path)
    finally:
        if wandb is not None:
            wandb.close()
    _sweep_summary(events, config.output_path)
    return 0


def _sweep_workers(args: argparse.Namespace, config: Any) -> int:
    """``--workers N`` (local processes) or ``--slurm ...`` (submitit jobs)."""
    from functools import partial

    from lm_eval.utils import simple_parse_args_string

    from lm_edit.studies.sweep.workers import local_workers, run_workers, unfinished

    if args.slurm is not None:
        from lm_edit.studies.sweep.cluster import submitit_start

        options = simple_parse_args_string(args.slurm) if args.slurm else {}
        n_jobs = args.workers or len(config.run_names)
        start = submitit_start({k: str(v) for k, v in options.items()}, n_jobs)
    else:
        start = partial(local_workers, n=args.workers)
    wandb: dict[str, Any] = {}
    if args.wandb_args:
        from lm_edit.studies.sweep.loggers import require_wandb

        require_wandb()
        wandb["wandb_args"] = simple_parse_args_string(args.wandb_args)
        wandb["wandb_config_args"] = simple_parse_args_string(args.wandb_config_args or "")
    try:
        outcome = run_workers(config, start, **wandb)
    except KeyboardInterrupt:
        return _interrupted(config.output_path)
    _sweep_summary(outcome.events, config.output_path)
    missing = unfinished(config)
    for line in outcome.failures:
        print(f"lm-edit sweep: {line}", file=sys.stderr)
    if missing:
        print(
            f"lm-edit sweep: {len(missing)} checkpoint(s) unfinished ({', '.join(missing)}); "
            "re-run the same command to resume.",
            file=sys.stderr,
        )
    return 1 if outcome.failures or missing else 0


def _interrupted(output_path: Path) -> int:
    """List what an interrupted sweep saved; exit status 130."""
    from lm_edit.studies.sweep.manifest import MANIFEST, read_manifest

    manifest = output_path / MANIFEST
    saved = read_manifest(manifest)["checkpoints"] if manifest.is_file() else {}
    print(f"\nlm-edit sweep: interrupted. {len(saved)} checkpoint(s) are saved:", file=sys.stderr)
    for key, entry in sorted(saved.items()):
        print(f"  {key}: {output_path / entry['results']}", file=sys.stderr)
    print("Re-run the same command to resume.", file=sys.stderr)
    return 130


def _sweep_summary(events: list[tuple[str, int, str]], output_path: Path) -> None:
    from lm_edit.studies.sweep.runner import checkpoint_outcomes

    counts = checkpoint_outcomes(events)
    done = counts["skipped"]
    print(f"sweep: {counts['evaluated']} checkpoint(s) evaluated, {done} already done")
    if counts["elsewhere"]:
        print(f"{counts['elsewhere']} checkpoint(s) left to other processes of this sweep")
    print(f"results and manifest: {output_path}")


def _wandb_logger(args: argparse.Namespace) -> Any:
    """lm-eval's W&B logger for the sweep when ``--wandb_args`` is given, else None."""
    if not args.wandb_args:
        return None
    from lm_eval.utils import simple_parse_args_string

    from lm_edit.studies.sweep.loggers import WandbSweepLogger

    return WandbSweepLogger(
        simple_parse_args_string(args.wandb_args),
        simple_parse_args_string(args.wandb_config_args or ""),
    )


def _report(args: argparse.Namespace) -> int:
    from lm_edit.studies.report.build import write_report

    written = write_report(args.sweeps, args.output, at=args.at)
    for path in written:
        print(f"wrote {path}")
    return 0


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _json_object(text: str) -> dict[str, Any]:
    """A JSON object from the command line, or an error naming what is wrong."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"give a JSON object such as '{{\"score_cases\": 500}}', not {text!r}"
        )
    return value


def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="evaluate sequential edits at checkpoints (resumable)")
    sweep.add_argument("--model_args", required=True, help="edited-hf arguments, k=v,...")
    sweep.add_argument("--editors", required=True, help="comma-separated, e.g. rome,memit")
    sweep.add_argument(
        "--grid",
        action="append",
        metavar="NAME=V1,V2,...",
        help="run each editor that takes hyperparameter NAME once per value, as runs named "
        "<editor>-NAME=V (repeat for several hyperparameters: every combination)",
    )
    sweep.add_argument("--checkpoints", required=True, help="edit counts, e.g. 1,10,20,100")
    sweep.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks")
    sweep.add_argument("--output_path", required=True, type=Path, help="the sweep folder")
    sweep.add_argument("--device", default="cpu")
    sweep.add_argument("--batch_size", default=1)
    sweep.add_argument("--limit", type=float)
    sweep.add_argument(
        "--metadata",
        type=_json_object,
        default={},
        help="""the tasks' metadata as a JSON object, as lm_eval's, e.g. '{"score_cases": 500}'""",
    )
    sweep.add_argument("--num_fewshot", type=int)
    sweep.add_argument("--gen_kwargs")
    sweep.add_argument("--log_samples", action="store_true")
    sweep.add_argument("--apply_chat_template", action="store_true")
    sweep.add_argument("--fewshot_as_multiturn", action="store_true")
    sweep.add_argument("--confirm_run_unsafe_code", action="store_true")
    sweep.add_argument("--include_path", action="append", default=[], help="extra task YAMLs")
    sweep.add_argument("--seed", type=int, default=0, help="lm-eval's random seeds")
    sweep.add_argument(
        "--perplexity", action="store_true", help="adjusted perplexity at each checkpoint"
    )
    sweep.add_argument("--ppl_model", help="scoring model (default: the unedited model)")
    sweep.add_argument("--ppl_max_new_tokens", type=int, default=32)
    sweep.add_argument(
        "--overwrite", action="store_true", help="discard a different sweep in the folder"
    )
    sweep.add_argument("--wandb_args", help="wandb.init arguments k=v,... (one W&B run per editor)")
    sweep.add_argument("--wandb_config_args", help="extra W&B config k=v,...")
    sweep.add_argument(
        "--workers", type=int, help="worker processes (one GPU each), or jobs with --slurm"
    )
    sweep.add_argument(
        "--slurm",
        nargs="?",
        const="",
        help="submit the workers as Slurm jobs through submitit: partition=...,timeout_min=..."
        " (pip install 'lm-edit[cluster]')",
    )
    sweep.set_defaults(run=_sweep)
    save = sub.add_parser(
        "save", help="apply edits and write the edited model for --model hf (weight edits only)"
    )
    save.add_argument("--model_args", required=True, help="edited-hf arguments, k=v,...")
    save.add_argument("--output", type=Path, required=True, help="folder to write")
    save.add_argument("--device")
    save.add_argument(
        "--overwrite", action="store_true", help="replace an earlier lm-edit save output"
    )
    save.set_defaults(run=_save)
    report = sub.add_parser("report", help="tables, plots and leaderboard of sweep folders")
    report.add_argument("sweeps", type=Path, nargs="+", help="sweep folders")
    report.add_argument("--output", type=Path, required=True, help="report folder")
    report.add_argument("--at", type=int, help="#edits for the leaderboard (default: largest)")
    report.set_defaults(run=_report)


def _save(args: argparse.Namespace) -> int:
    from lm_eval._cli.utils import key_val_to_dict

    from lm_edit.saving import save_edited

    model_args = key_val_to_dict(args.model_args)
    if args.device:
        model_args["device"] = args.device
    folder = save_edited(model_args, args.output, overwrite=args.overwrite)
    print(f"wrote the edited model to {folder}; evaluate it with:")
    print(f"  lm_eval --model hf --model_args pretrained={folder} --tasks ...")
    return 0


def _train(args: argparse.Namespace) -> int:
    from lm_eval._cli.utils import key_val_to_dict

    flags = _TRAINED[args.editor][3]
    given = {name: getattr(args, name) for name in flags}
    given = {k: v for k, v in given.items() if v is not None}
    model_args = key_val_to_dict(args.model_args)
    if args.device:
        model_args["device"] = args.device
    options = {"split": args.train_split, "progress": not args.no_progress}
    try:
        if args.editor == "serac":
            from lm_edit.editors.serac.command import run_train_serac
            from lm_edit.editors.serac.training import SeracTrainSettings

            settings = SeracTrainSettings(**given)
            report = run_train_serac(model_args, args.train_data, args.output, settings, **options)
        else:
            from lm_edit.editors.learned.command import run_train_network
            from lm_edit.editors.learned.ke_training import KeTrainSettings
            from lm_edit.editors.learned.training import TrainSettings

            settings = KeTrainSettings(**given) if args.editor == "ke" else TrainSettings(**given)
            report = run_train_network(
                model_args, args.train_data, args.output, settings, editor=args.editor, **options
            )
    except KeyboardInterrupt:
        print(
            f"\nlm-edit train {args.editor}: interrupted; {args.output} keeps the last "
            "checkpoint, and the same command continues from it.",
            file=sys.stderr,
        )
        return 130
    final = report["final"]
    trained = "scope classifier" if args.editor == "serac" else "network"
    print(f"{args.editor.upper()} {trained} after {final['step']} steps: {args.output}")
    print(
        "validation ({cases} cases): edit success {edit_success}, generality {generality}, "
        "locality {locality}".format(**final)
    )
    if args.editor == "serac":
        print("scope: in scope {in_scope}, out of scope {out_of_scope}".format(**final))
    print(f"edit with: --model_args ...,editor={args.editor},editor_checkpoint={args.output}")
    return 0


_NETWORK_FLAGS: dict[str, tuple[type, str]] = {
    "steps": (int, "optimiser updates (default 10000)"),
    "batch_size": (int, "edits per update (default 10)"),
    "lr": (float, "Adam learning rate of the network (default 1e-6)"),
    "c_edit": (float, "weight of the edit loss (default 0.1)"),
    "c_loc": (float, "weight of the locality KL (default 1.0)"),
    "locality_positions": (
        str,
        "where the locality KL is averaged: 'answer' (the unrelated answer's positions, "
        "default) or 'all' (every position of the unrelated text but the last)",
    ),
    "grad_clip": (float, "largest gradient norm (default 100)"),
    "val_every": (int, "steps between validations (default 100)"),
    "val_cases": (int, "held-out validation cases (default 100)"),
    "checkpoint_every": (int, "steps between checkpoints (default: val_every)"),
    "seed": (int, "seed of the split, case order and network (default 0)"),
}
"""The flags every network-training run (MEND's, KE's) has: ``NetworkTrainSettings``."""

_TRAIN_FLAGS: dict[str, tuple[type, str]] = {
    **_NETWORK_FLAGS,
    "lr_lr": (float, "Adam learning rate of the step sizes (default 1e-4)"),
    "edit_lr": (float, "initial step size of every edited weight (default 1e-4)"),
    "rank": (int, "rank of the network's layers (default 1920)"),
    "n_hidden": (int, "hidden layers of the network (default 1)"),
}
"""``lm-edit train mend`` flags: the fields of ``TrainSettings`` (declared here so that
building the parser imports nothing heavy; a test keeps the two in step)."""


_SERAC_FLAGS: dict[str, tuple[type, str]] = {
    "steps": (int, "optimiser updates (default 3000)"),
    "batch_size": (int, "edits per update (default 10)"),
    "lr": (float, "Adam learning rate of the classifier (default 1e-3)"),
    "layer": (int, "block whose output the classifier reads (default: at 15%% of the depth)"),
    "width": (int, "hidden width of the classifier (default 512)"),
    "dim": (int, "embedding size (default 256)"),
    "grad_clip": (float, "largest gradient norm (default 100)"),
    "val_every": (int, "steps between validations (default 1000)"),
    "val_cases": (int, "held-out validation cases (default 100)"),
    "checkpoint_every": (int, "steps between checkpoints (default: val_every)"),
    "seed": (int, "seed of the split, case order and classifier (default 0)"),
    "template": (str, "counterfactual template the validation uses (default: reference)"),
}
"""``lm-edit train serac`` flags: the fields of ``SeracTrainSettings``."""

_KE_FLAGS: dict[str, tuple[type, str]] = {
    **_NETWORK_FLAGS,
    "lr": (float, "Adam learning rate of the network (default 1e-5)"),
    "hidden_dim": (int, "LSTM and update networks' hidden width (default 512)"),
    "condition_dim": (int, "size of the condition vector (default 768)"),
    "max_scale": (float, "largest scale of an update (default 1)"),
}
"""``lm-edit train ke`` flags: the fields of ``KeTrainSettings``."""

_TRAINED = {
    "mend": (
        "train MEND's gradient transform (resumable: run again to continue)",
        "Train MEND's network on edit data.",
        "pretrained=...[,device=...,dtype=...,layers=...,layer_count=...,modules=...]",
        _TRAIN_FLAGS,
    ),
    "ke": (
        "train KE's hyper-network (resumable: run again to continue)",
        "Train KnowledgeEditor's network on edit data.",
        "pretrained=...[,device=...,dtype=...,layers=...,layer_count=...,modules=...]",
        _KE_FLAGS,
    ),
    "serac": (
        "train SERAC's scope classifier (resumable: run again to continue)",
        "Train SERAC's scope classifier on edit data (the counterfactual model is the "
        "model itself).",
        "pretrained=...[,device=...,dtype=...]",
        _SERAC_FLAGS,
    ),
}


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train an editor that learns to edit")
    kinds = train.add_subparsers(dest="editor", required=True)
    for editor, (short, what, model_help, flags) in _TRAINED.items():
        parser = kinds.add_parser(
            editor,
            help=short,
            description=f"{what} --output holds the checkpoint (written every "
            "--checkpoint_every steps; the same command run again continues from it) and "
            "the final validation.",
        )
        parser.add_argument("--model_args", required=True, help=model_help)
        parser.add_argument(
            "--train_data", required=True, help="edit data: built-in name, file, Hub id"
        )
        parser.add_argument("--train_split", help="Hub split of --train_data")
        parser.add_argument("--output", type=Path, required=True, help="the run's folder")
        parser.add_argument("--device", help="shorthand for device= in --model_args")
        parser.add_argument("--no_progress", action="store_true", help="no progress bar")
        for name, (kind, text) in flags.items():
            parser.add_argument(f"--{name}", type=kind, help=text)
        parser.set_defaults(run=_train)


def build_parser() -> argparse.ArgumentParser:
    """The ``lm-edit`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lm-edit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("editors", help="list editors").set_defaults(run=_editors)
    data = sub.add_parser("data", help="load an edit data set and show some cases")
    data.add_argument("spec", help="built-in name, Hub id or local file")
    data.add_argument("--split")
    data.add_argument("--n", type=int, default=5)
    data.add_argument("--seed", type=int, default=0)
    data.set_defaults(run=_data)
    stats = sub.add_parser("stats", help="precompute an editor's key statistics")
    stats.add_argument("pretrained")
    stats.add_argument("--editor", default="rome")
    stats.add_argument("--set", nargs="*", default=[], help="hyperparameter overrides k=v")
    stats.set_defaults(run=_stats)
    model = sub.add_parser("model", help="resolve a model name (the demo model is converted)")
    model.add_argument("pretrained")
    model.set_defaults(run=_model)
    capability = sub.add_parser(
        "capability-data", help="build the datasets cache for offline capability benchmarks"
    )
    capability.add_argument(
        "sources", type=Path, nargs="+", help="folders with local copies, searched in order"
    )
    capability.add_argument("--only", help="comma-separated benchmarks (default: all present)")
    capability.add_argument("--cache-dir", type=Path, help="default: HF_DATASETS_CACHE")
    capability.set_defaults(run=_capability_data)
    lite = sub.add_parser("lite-ids", help="run the edit_capability_lite selection rule")
    lite.add_argument("source", type=Path, help="folder with the local copies")
    lite.add_argument("--out", type=Path, help="default: tasks/capability/lite_ids.json")
    lite.add_argument("--check", action="store_true", help="compare with the recorded file")
    lite.set_defaults(run=_lite_ids)
    compare = sub.add_parser(
        "capability-compare", help="capability scores of two model states side by side"
    )
    compare.add_argument("unedited", type=Path, help="lm_eval --output_path of the baseline")
    compare.add_argument("edited", type=Path, help="lm_eval --output_path after editing")
    compare.set_defaults(run=_capability_compare)
    _add_sweep_parser(sub)
    _add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``lm-edit`` command; errors are printed without a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, KeyError, FileNotFoundError, ModuleNotFoundError) as exc:
        print(f"lm-edit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
