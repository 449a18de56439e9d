"""What a training loss needs from per-triple candidate stores (mined or generated negatives).

Protocols only, so the loss code (``dhns.training.kgc``) does not depend on the modules that
fill the stores (``dhns.negatives``: mining, diffusion).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch


class CandidateStore(Protocol):
    """Per-training-triple candidates that are refreshed (``store``) and scored (``loss``)."""

    def store(self, mined: Tensor) -> None: ...

    def coverage(self) -> float: ...

    def loss(self, model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
             temperature: float) -> Tensor:
        """Self-adversarial loss of ``batch`` over ``negatives`` plus its stored candidates."""
        ...


@runtime_checkable
class GeneratedStore(CandidateStore, Protocol):
    """A store of generated embeddings, usable by the cross-entropy regimes too."""

    log_prior: Tensor  # (L,) per-level prior weight, as a log

    def both_sides(self, batch: Tensor) -> Tensor:
        """``(2B, L, D)``: candidates of ``batch``'s tail queries, then of its head queries."""
        ...
