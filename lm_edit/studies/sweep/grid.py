"""Hyperparameter grids: ``--grid eps=0.5,1,3`` runs every editor that takes ``eps`` once
per value, each as its own run of the sweep (its own stream, folder and manifest entries)
named ``<editor>-eps=0.5``; editors that take none of the grid's hyperparameters run once
under their own name. Several ``--grid`` options multiply (every combination)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from lm_edit.editors.registry import hyperparameter_names

VALUE = re.compile(r"[A-Za-z0-9._-]+")
"""What a grid value may look like: it is part of a folder name."""


@dataclass(frozen=True)
class Run:
    """One stream of a sweep: its name (folder and manifest key), its editor, and the
    grid's hyperparameters for it."""

    name: str
    editor: str
    settings: dict[str, str] = field(default_factory=dict)


def parse_grid(options: list[str]) -> dict[str, list[str]]:
    """``["eps=0.5,1,3", ...]`` as ``{"eps": ["0.5", "1", "3"]}``, checked."""
    grid: dict[str, list[str]] = {}
    for option in options:
        name, sep, values = option.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values:
            raise ValueError(
                f"--grid {option!r}: expected NAME=V1,V2,... (e.g. --grid eps=0.5,1,3)."
            )
        if name in grid:
            raise ValueError(f"--grid names {name!r} twice; give all its values in one option.")
        grid[name] = [v.strip() for v in values.split(",")]
    return grid


def check_grid(grid: dict[str, list[str]], editors: list[str], model_args: dict[str, Any]) -> None:
    """Refuse a grid no editor of the sweep takes, a value that cannot be part of a folder
    name, a repeated value, or a hyperparameter also fixed in ``model_args``."""
    taken = set().union(*(hyperparameter_names(e) for e in editors)) if editors else set()
    for name, values in grid.items():
        if name not in taken:
            raise ValueError(
                f"--grid {name}: none of the sweep's editors ({', '.join(editors)}) takes "
                f"{name!r} as a hyperparameter."
            )
        if name in model_args:
            raise ValueError(
                f"--grid {name} and --model_args {name}={model_args[name]} both set {name!r}; "
                "keep one."
            )
        bad = [v for v in values if not VALUE.fullmatch(v)]
        if bad or not values:
            raise ValueError(
                f"--grid {name}: values must be plain numbers or words ([A-Za-z0-9._-]), "
                f"got {bad or values}."
            )
        if len(set(values)) != len(values):
            raise ValueError(f"--grid {name}: a value is given twice in {values}.")


def expand(editors: list[str], grid: dict[str, list[str]]) -> list[Run]:
    """The sweep's runs: per editor, one per combination of the grid values it takes."""
    runs: list[Run] = []
    for editor in editors:
        names = [n for n in grid if n in hyperparameter_names(editor)]
        if not names:
            runs.append(Run(editor, editor))
            continue
        for values in itertools.product(*(grid[n] for n in names)):
            settings = dict(zip(names, values, strict=True))
            label = "-".join(f"{n}={v}" for n, v in settings.items())
            runs.append(Run(f"{editor}-{label}", editor, settings))
    return runs
