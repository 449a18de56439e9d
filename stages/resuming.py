"""The resume file of a training stage, fingerprinted by its params and its input files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dhns.config import Params, to_dict
from dhns.training.resume import ResumeFile, fingerprint
from stages.common import log


def resume_file(params: Params, stage: str, inputs: Iterable[Path]) -> ResumeFile:
    """``<resume.dir>/<stage>.pt`` for this run: every param but ``resume`` itself, and the
    bytes of every file under ``inputs`` (files or folders), identify it."""
    files = []
    for path in inputs:
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    raw = to_dict(params)
    raw.pop("resume")
    return ResumeFile(Path(params.resume.dir) / f"{stage}.pt",
                      fingerprint({"stage": stage, "params": raw}, files), log)
