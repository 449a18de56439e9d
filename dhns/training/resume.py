"""Resume state of a training run: what a killed stage needs to continue bit-identically.

One file per stage (``<resume.dir>/<stage>.pt``, outside every DVC output, so ``dvc repro``
neither deletes nor caches it), written atomically (temporary file, fsync, rename) by the
:class:`~dhns.training.trainer.Trainer` every ``resume.checkpoint_every`` epochs and when the
run is asked to stop (SIGTERM, Ctrl-C). It holds the model, the optimiser and the learning-rate
schedule, the trainer's counters, best state and history, the position inside the epoch, the
state of every generator and of stateful negative samplers, and a fingerprint of what the
stage reads (its params and its input files). A stage resumes only from a file whose
fingerprint matches; a finished stage removes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from dhns.io import atomic_torch_save

FORMAT = "dhns-resume/1"


def fingerprint(params: dict[str, Any], inputs: Iterable[str | Path] = ()) -> str:
    """SHA-256 over ``params`` (as canonical JSON) and the bytes of every ``inputs`` file."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(str(path).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ResumeFile:
    """The resume file of one stage; ``fingerprint`` identifies the run it may continue."""

    def __init__(self, path: str | Path, fingerprint: str,
                 log: Callable[[str], None] = print) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.log = log

    def load(self) -> dict[str, Any] | None:
        """The saved state when it belongs to this run; else None, saying why in one line."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                raise ValueError("not a dhns resume file")
        except Exception as exc:  # a torn or foreign file: never fatal, start again
            self.log(f"resume: {self.path} is unreadable ({exc.__class__.__name__}); "
                     "starting fresh")
            return None
        if state.get("fingerprint") != self.fingerprint:
            self.log(f"resume: {self.path} is from other params or inputs; starting fresh")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.path, {"format": FORMAT, "fingerprint": self.fingerprint,
                                      **state})

    def clear(self) -> None:
        """Remove the file (the run finished)."""
        self.path.unlink(missing_ok=True)
