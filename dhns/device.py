"""Turn the ``device`` option of ``params.yaml`` into a :class:`torch.device`."""

from __future__ import annotations

import os
import re

import torch

from dhns.errors import UserError

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str) -> torch.device:
    """Resolve ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` to a device.

    ``"auto"`` picks the first CUDA device when one is available, else the CPU. An explicit
    accelerator that is not available raises here, with the reason, rather than deep inside a
    model's first ``.to()`` call.

    Raises:
        UserError: unknown spelling, or an accelerator that this machine does not have.
        ValueError: ``spec`` is not a string (a caller's bug: params give a string).
    """
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string, got {type(spec).__name__} {spec!r}")
    s = spec.strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(s)
    if match:
        if not torch.cuda.is_available():
            raise UserError(
                f"device {spec!r} requested but CUDA is not available on this machine "
                "(use 'auto' or 'cpu')"
            )
        index = int(match.group(1) or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise UserError(f"device {spec!r} requested but only {count} CUDA device(s) exist")
        return torch.device("cuda", index)
    if s == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    raise UserError(
        f"unknown device {spec!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    )


def set_deterministic(enabled: bool) -> None:
    """Make every run of a stage bit-identical on the same machine and thread count (or not).

    Measured here: with two CPU threads, two runs of the synthetic pretrain ended with weights
    up to 0.10 apart (eager and compiled alike), because parallel scatter-adds in the
    embedding gradients sum in a varying order; with deterministic algorithms they were equal.
    ``warn_only``: an op with no deterministic kernel warns instead of failing. On CUDA, cuBLAS
    needs a fixed workspace for this, set here unless the user chose one.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
