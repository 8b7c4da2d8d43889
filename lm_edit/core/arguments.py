"""Typed, range-checked arguments: one place where every editor hyperparameter and every
``edited-hf`` argument is declared, converted from the command line and validated.

A declaration is a dataclass field made with :func:`argument`, which may carry bounds
(``ge``, ``gt``, ``le``, ``lt``), a one-line ``help`` and ``file=True`` for an argument
whose value may name a local file that is read (see :func:`file_fields`). :func:`build`
turns a mapping of (often string) values into the dataclass, naming the argument, the
value and what is allowed in every error. :data:`RESERVED_NAMES` lists the names the
model wrapper and Hugging Face loading claim, which no editor hyperparameter may take.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from lm_edit.core.anatomy import OVERRIDE_KEYS

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def argument(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    file: bool = False,
) -> Any:
    """A dataclass field with optional bounds, checked by :func:`check_bounds`; ``file``
    marks a value that may name a local file whose contents decide the result."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"help": help, "file": file, **bounds})


def file_fields(cls: type) -> list[str]:
    """Names of the fields of dataclass ``cls`` declared with ``file=True``."""
    return [spec.name for spec in fields(cls) if spec.metadata.get("file")]


def check_bounds(instance: Any, owner: str) -> None:
    """Raise ``ValueError`` for the first field of ``instance`` outside its declared bounds
    (``None`` values are not checked; list items are checked one by one)."""
    for spec in fields(instance):
        bounds = {k: spec.metadata[k] for k in _BOUNDS if k in spec.metadata}
        value = getattr(instance, spec.name)
        if not bounds or value is None or isinstance(value, str):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                _check_one(owner, spec.name, value, item, bounds)


def _check_one(owner: str, name: str, value: Any, item: float, bounds: dict) -> None:
    ok = {
        "ge": lambda b: item >= b,
        "gt": lambda b: item > b,
        "le": lambda b: item <= b,
        "lt": lambda b: item < b,
    }
    failed = [k for k, bound in bounds.items() if not ok[k](bound)]
    if failed:
        allowed = " and ".join(f"{_BOUNDS[k]} {bounds[k]:g}" for k in bounds)
        raise ValueError(f"{owner}: {name}={value!r} is out of range; it must be {allowed}.")


def build(cls: type, values: dict[str, Any], owner: str, what: str = "argument") -> Any:
    """Instantiate dataclass ``cls`` from ``values``, converting strings from the command
    line to the declared types. Unknown names raise a ``ValueError`` listing the valid ones;
    bounds are checked by ``cls`` itself (see :func:`check_bounds`)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown {what}(s) {', '.join(unknown)} for {owner}. "
            f"Valid: {', '.join(sorted(known))}."
        )
    hints = typing.get_type_hints(cls)
    converted = {k: coerce(v, hints[k], f"{owner}: {k}") for k, v in values.items()}
    try:
        return cls(**converted)
    except ValueError as exc:  # bounds: name the owner the user knows, not the class
        raise ValueError(str(exc).replace(f"{cls.__name__}:", f"{owner}:", 1)) from None


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert ``value`` (often a string from ``--model_args``) to the type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.strip().lower() == "none")
        if is_none and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, name)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{name} must be {describe(hint)}, got {value!r}")
    if isinstance(value, str) and hint is not str:
        value = parse_literal(value)
    if origin in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        inner = args[0] if args else Any
        try:
            converted = [coerce(v, inner, name) for v in items]
        except ValueError:
            raise ValueError(f"{name} must be {describe(hint)}, got {value!r}") from None
        return tuple(converted) if origin is tuple else converted
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be {describe(hint)}, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return hint(value)
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list (separated by ';') of: {describe(args[0]) if args else 'values'}"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "none",
    }
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def parse_literal(text: str) -> Any:
    """A command-line value as Python data: ``true``/``false``, ``4;5;6`` lists (``;`` or
    ``|``, since ``simple_evaluate`` splits model_args on every comma), numbers and
    literals; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for separator in (";", "|"):
        if separator in text:
            return [parse_literal(part) for part in text.split(separator)]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass(frozen=True)
class EditArguments:
    """The ``edited-hf`` arguments that choose and apply the edits (README, model arguments)."""

    editor: str = argument("rome", help="an editor name (a YAML in editors/)")
    n_edits: int | Literal["all"] = argument(10, ge=1, help="cases to edit, or 'all'")
    edit_data: str = argument(
        "demo", file=True, help="built-in name, local .json/.jsonl file or Hub id"
    )
    edit_split: str | None = argument(None, help="Hub split (KnowEdit: the benchmark file)")
    edit_batch_size: int = argument(1, ge=1, help="requests per edit step")
    edit_seed: int = argument(0, help="seed of case order, templates and statistics sampling")
    editor_config: str | None = argument(None, file=True, help="a YAML of hyperparameters")
    individual_scores: bool = argument(True, help="score each batch right after it is applied")
    score_cases: int | None = argument(None, ge=1, help="score only the first N edited cases")
    generation_batch_size: int | None = argument(None, ge=1, help="batch of generation requests")

    def __post_init__(self) -> None:
        check_bounds(self, "edited-hf")

    @property
    def n_edits_or_all(self) -> int | None:
        """``n_edits`` as a count, ``None`` for all."""
        return None if self.n_edits == "all" else int(self.n_edits)


HF_LOADING_ARGUMENTS = frozenset(
    {
        # HFLM.__init__ (lm-eval 0.4.x); a test keeps this in step with the installed lm-eval.
        *("add_bos_token", "autogptq", "backend", "batch_size", "chat_template_args", "delta"),
        *("device", "dtype", "enable_thinking", "gguf_file", "gptqmodel", "logits_cache"),
        *("max_batch_size", "max_cpu_memory", "max_length", "max_memory_per_gpu"),
        *("mixed_precision_dtype", "offload_folder", "parallelize", "peft", "prefix_token_id"),
        *("pretrained", "revision", "softmax_dtype", "subfolder", "think_end_token"),
        *("tokenizer", "tp_plan", "truncation", "trust_remote_code", "use_fast_tokenizer"),
        # passed on by HFLM to from_pretrained
        *("torch_dtype", "attn_implementation", "device_map", "low_cpu_mem_usage", "token"),
        *("quantization_config", "load_in_8bit", "load_in_4bit", "cache_dir", "variant"),
        *("local_files_only", "use_safetensors", "config", "seed"),
    }
)
"""Names HFLM and Hugging Face loading take from ``--model_args``."""

RESERVED_NAMES = frozenset(
    {*HF_LOADING_ARGUMENTS, *(f.name for f in fields(EditArguments)), *OVERRIDE_KEYS}
    | {"defer_edits"}
)
"""Every name the model wrapper claims: no editor hyperparameter may use one, so each
``--model_args`` entry has exactly one owner."""
