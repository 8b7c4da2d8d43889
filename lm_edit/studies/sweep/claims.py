"""Claims: which worker runs which independent run of a sweep.

A run (today one editor's edit stream; the unedited checkpoint is a claim of its own) is
claimed by an flock on ``<folder>/.claims/<run>.lock``, held while the run works. Claims
never wait: a worker skips a run another worker holds and takes the next one. The
operating system drops the lock of a worker that dies, so a later worker takes the run
over and resumes it from the manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lm_edit.studies.sweep.folder import SAFE_NAME, inside
from lm_edit.studies.sweep.lock import CLAIMS, flock_file


def claim_path(root: Path, run: str) -> Path:
    """The lock file of run ``run`` (a plain name), checked to lie inside ``root``."""
    if not SAFE_NAME.fullmatch(run):
        raise ValueError(f"{run!r} cannot name a claim: not a plain name.")
    folder = inside(root, root / CLAIMS)
    folder.mkdir(exist_ok=True)
    return inside(root, folder / f"{run}.lock")


@contextmanager
def claim(root: Path, run: str) -> Iterator[bool]:
    """Try to claim ``run`` for the block; yield whether this process holds it."""
    with flock_file(claim_path(root, run), wait=False) as held:
        yield held
