"""Seeded generators: every random stream of a run derives from ``params.seed``."""

from __future__ import annotations

import torch

#: Rank r of a distributed run adds r << RANK_SHIFT to its seeds: above every seed * 1000 +
#: offset (seeds are < 2**32), so no rank's stream equals another's or a stage's.
RANK_SHIFT = 50


def seeded(seed: int, offset: int, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded ``seed * 1000 + offset`` (plus ``rank << RANK_SHIFT`` on rank
    ``rank`` of a distributed run); each use takes its own offset, so streams never share
    draws and adding one never shifts another. Rank 0 draws what a single process draws."""
    return torch.Generator().manual_seed(seed * 1000 + offset + (rank << RANK_SHIFT))
