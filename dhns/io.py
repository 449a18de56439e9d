"""Atomic file writes: a reader (or a killed run) never sees half a file.

A failed write (full disk, read-only folder) leaves the old file as it was and raises an
:class:`OSError` naming the file it was writing, which :func:`dhns.errors.error_message`
turns into the one line the stages and the CLI print.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, path.parent) from exc
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            # A write error names no file (or the random temp file): name the target.
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` as the same kind of OSError (errno picks the subclass) about ``path``."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def check_writable(folder: str | Path) -> None:
    """Make ``folder`` if missing and write a byte to a temp file in it, so a stage finds a
    read-only, misplaced or full output folder before its work, not after.

    Raises:
        OSError: ``<folder>: not writable (<reason>)``.
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check-", suffix=".tmp")
        try:
            os.write(fd, b"x")  # a full disk often still has inodes for an empty file
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise OSError(exc.errno, f"not writable ({exc.strerror or exc})", str(folder)) from exc


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON ``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def strict_json(obj: Any) -> str:
    """Strict JSON text (RFC 8259) of ``obj``, indented: Python's ``json`` would write a
    non-finite float as a bare ``NaN`` or ``Infinity``, which strict parsers (jq, browsers,
    JSON Schema tools) reject; such a metric, one that was never measured or diverged, is
    written as ``null`` instead."""
    return json.dumps(finite_json(obj), indent=2, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as :func:`strict_json` (never ``NaN``), atomically."""
    text = strict_json(obj) + "\n"
    atomic_write(path, lambda p: Path(p).write_text(text))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` through an open file, never a path: given a path, torch names the zip
    archive inside after the (random) temporary file, so equal content would hash differently
    and DVC would rerun every stage downstream. Equal objects give equal bytes."""

    def save(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, save)
