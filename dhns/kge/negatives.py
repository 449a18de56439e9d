"""What a negative sampler hands the loss (the samplers themselves: :mod:`dhns.samplers`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class NegativeBatch:
    """``candidates``: ``(C, K)`` entity ids, shared by chunks of ``ceil(B / C)`` positives
    (``C == B``: one row per positive); ``corrupt_tail``: ``(B,)`` bool, the side each
    positive replaces with its chunk's candidates."""

    candidates: Tensor
    corrupt_tail: Tensor
