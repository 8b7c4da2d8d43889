"""Cache files that know what they hold.

Every cache file (key statistics, matrices derived from them, target values, sampled text)
is a one-line header carrying the SHA-256 and length of its payload, then the payload:
``torch.save`` bytes for ``.pt`` files (read back with ``weights_only=True``), JSON for
``.json`` files. It is written atomically (:mod:`lm_edit.atomic`).

:func:`load_cached` checks the header, the length, the checksum and then the content
(shape, dtype, finite values: the caller's ``validate``). A file failing any check is
logged with the reason, deleted and reported missing, so the caller recomputes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lm_edit.atomic import remove_stale_temps, save_bytes

logger = logging.getLogger(__name__)

MAGIC = b"lm-edit-cache/1"
_cleaned: set[Path] = set()


class CacheFileError(ValueError):
    """A cache file whose content cannot be trusted (the message says why)."""


def save_cached(value: Any, path: Path) -> None:
    """Write ``value`` to ``path`` (tensors for ``.pt``, JSON for ``.json``) atomically,
    with the header that :func:`load_cached` checks."""
    if path.suffix == ".json":
        payload = json.dumps(value).encode("utf-8")
    else:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        payload = buffer.getvalue()
    checksum = hashlib.sha256(payload).hexdigest()
    header = b"%s sha256=%s bytes=%d\n" % (MAGIC, checksum.encode(), len(payload))
    save_bytes(header + payload, path)


def load_cached(path: Path, validate: Callable[[Any], object]) -> Any | None:
    """The value cached at ``path``, or None when there is none or it fails a check (then
    the file is deleted, with a warning naming it and the reason). ``validate`` raises
    :class:`CacheFileError` when the decoded value is not what the caller expects."""
    folder = path.parent
    if folder not in _cleaned:
        remove_stale_temps(folder)
        _cleaned.add(folder)
    try:
        before = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = _decode(_payload(data), path.suffix)
        validate(value)
        return value
    except CacheFileError as error:
        logger.warning("Cache file %s is invalid (%s); deleting and recomputing it.", path, error)
        _delete_if_unchanged(path, before)
        return None


def check_tensor(
    value: Any, what: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``value`` if it is a finite tensor of ``shape`` and ``dtype`` (any floating dtype
    when None), else :class:`CacheFileError` naming ``what`` and the mismatch."""
    if not isinstance(value, torch.Tensor):
        raise CacheFileError(f"{what} is a {type(value).__name__}, not a tensor")
    if tuple(value.shape) != tuple(shape):
        raise CacheFileError(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if value.dtype != dtype if dtype is not None else not value.is_floating_point():
        expected = dtype if dtype is not None else "a floating dtype"
        raise CacheFileError(f"{what} has dtype {value.dtype}, expected {expected}")
    if not torch.isfinite(value).all():
        raise CacheFileError(f"{what} has non-finite values")
    return value


def _payload(data: bytes) -> bytes:
    """The payload after a header whose length and checksum it matches."""
    header, newline, payload = data.partition(b"\n")
    fields = header.split(b" ")
    if not newline or len(fields) != 3 or fields[0] != MAGIC:
        what = "empty" if not data else "no lm-edit cache header"
        raise CacheFileError(f"{what}; truncated or not written by this version")
    try:
        checksum = fields[1].removeprefix(b"sha256=").decode()
        size = int(fields[2].removeprefix(b"bytes="))
    except (UnicodeDecodeError, ValueError) as error:
        raise CacheFileError(f"malformed header {header[:80]!r}") from error
    if len(payload) != size:
        raise CacheFileError(f"truncated: {len(payload)} of {size} payload bytes")
    if hashlib.sha256(payload).hexdigest() != checksum:
        raise CacheFileError("checksum mismatch")
    return payload


def _decode(payload: bytes, suffix: str) -> Any:
    try:
        if suffix == ".json":
            return json.loads(payload.decode("utf-8"))
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as error:  # a checksummed payload this version cannot read
        raise CacheFileError(f"unreadable payload: {type(error).__name__}: {error}") from error


def _delete_if_unchanged(path: Path, before: os.stat_result) -> None:
    """Delete ``path`` unless another process replaced it since it was read."""
    try:
        now = path.stat()
        if (now.st_ino, now.st_size, now.st_mtime_ns) == (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        ):
            path.unlink()
    except FileNotFoundError:
        pass
