"""Seeded generators: every random stream of a run derives from ``params.seed``."""

from __future__ import annotations

import torch


def seeded(seed: int, offset: int) -> torch.Generator:
    """A CPU generator seeded ``seed * 1000 + offset``; each use takes its own offset, so
    streams never share draws and adding one never shifts another."""
    return torch.Generator().manual_seed(seed * 1000 + offset)
