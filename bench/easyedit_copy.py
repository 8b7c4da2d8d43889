"""What the scripts comparing lm-edit with one of EasyEdit's methods share: their command
line, finding the method's files in an EasyEdit checkout, and importing patched copies of
them from a temporary folder (each patch checked by count), forgotten again afterwards.
Importing this module puts the checkout it lives in first on ``sys.path``, so the scripts
measure this checkout's ``lm_edit`` (and use its ``tests.conftest``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Patch = tuple[str, str, str, int]
"""(file, text, replacement, how often the text must occur)."""


def comparison_parser(description: str) -> argparse.ArgumentParser:
    """The options every comparison takes: ``--reference-dir`` (default
    ``LM_EDIT_REFERENCE_DIR``) and ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--reference-dir",
        default=os.environ.get("LM_EDIT_REFERENCE_DIR"),
        help="EasyEdit checkout (the folder holding easyeditor/)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    return parser


def find_checkout(
    reference_dir: str | None, method: Path, files: tuple[str, ...], who: str
) -> Path:
    """The EasyEdit checkout under ``reference_dir`` (itself or its ``easyedit/``) that has
    ``method``'s ``files``, or exit with instructions."""
    if reference_dir:
        for root in (Path(reference_dir), Path(reference_dir) / "easyedit"):
            if all((root / method / name).is_file() for name in files):
                return root
    problem = (
        f"no EasyEdit code under {reference_dir} (needs {method}/ with {', '.join(files)})"
        if reference_dir
        else "no reference code given"
    )
    sys.exit(
        f"{who}: {problem}. Clone https://github.com/zjunlp/EasyEdit (compared at commit "
        f"14cea82) or extract it from a mirror with `git --git-dir=<mirror> archive HEAD "
        f"{method} | tar -x -C <dir>`, then pass --reference-dir <dir> or set "
        "LM_EDIT_REFERENCE_DIR."
    )


def apply_patches(folder: Path, patches: list[Patch], who: str) -> None:
    """Apply ``patches`` to the files under ``folder``; exit naming a patch whose text does
    not occur exactly as often as expected (the reference changed)."""
    for file, old, new, count in patches:
        path = folder / file
        text = path.read_text()
        found = text.count(old)
        if found != count:
            sys.exit(f"{who}: patch {old[:60]!r} expected {count}x in {file}, got {found}")
        path.write_text(text.replace(old, new))


@contextlib.contextmanager
def patched_packages(
    checkout: Path,
    method: Path,
    files: tuple[str, ...],
    variants: dict[str, list[Patch]],
    prefix: str,
    who: str,
) -> Iterator[dict[str, str]]:
    """Per variant, the name of an importable package holding ``method``'s ``files`` with
    that variant's patches; the packages and their modules are gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"lm-edit-{who}-") as tmp:
        sys.path.insert(0, tmp)
        try:
            packages = {}
            for index, (name, patches) in enumerate(variants.items()):
                package = f"{prefix}{index}"
                target = Path(tmp) / package
                for file in files:
                    (target / file).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(checkout / method / file, target / file)
                (target / "__init__.py").touch()
                apply_patches(target, patches, who)
                packages[name] = package
            importlib.invalidate_caches()
            yield packages
        finally:
            sys.path.remove(tmp)
            for module in list(sys.modules):
                if module.startswith(prefix):
                    del sys.modules[module]
