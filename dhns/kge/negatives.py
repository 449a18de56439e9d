"""Ordinary corruption negatives: uniform or Bernoulli (Wang et al. 2014), shared per chunk.

Each positive corrupts one side (head or tail, as RotatE and PyKEEN do): uniformly at random,
or by the Bernoulli rule. Candidates are shared by chunks of ``chunk_size`` positives: one
``(K,)`` id set per chunk serves both sides, because a tail query ``h * r`` and a head query
``t * conj(r)`` are both matched against entity embeddings. Scoring is then ``(C, S, 1, D)``
against ``(C, 1, K, D)``: ``K`` rather than ``S * K`` embeddings gathered per chunk, one
``(C, S, K)`` score block per step, and each positive still sees ``K`` negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NegativeBatch:
    """``candidates``: ``(C, K)`` entity ids; ``corrupt_tail``: ``(B,)`` bool, the side each
    positive replaces with its chunk's candidates."""

    candidates: Tensor
    corrupt_tail: Tensor


class NegativeSampler:
    def __init__(self, num_entities: int, num_negatives: int, chunk_size: int = 64,
                 mode: str = "uniform", train: Tensor | None = None,
                 num_relations: int | None = None) -> None:
        if mode not in ("uniform", "bernoulli"):
            raise ValueError(f"negative sampler must be uniform or bernoulli, got {mode!r}")
        self.num_entities = num_entities
        self.num_negatives = num_negatives
        self.chunk_size = chunk_size
        self.mode = mode
        self.tail_prob: Tensor | None = None
        if mode == "bernoulli":
            if train is None or num_relations is None:
                raise ValueError("bernoulli negatives need the training triples")
            self.tail_prob = bernoulli_tail_probability(train, num_relations)

    def sample(self, batch: Tensor, generator: torch.Generator) -> NegativeBatch:
        """Negatives for ``batch`` (B, 3) on ``batch.device``."""
        chunks = -(-len(batch) // self.chunk_size)
        device = batch.device
        candidates = torch.randint(self.num_entities, (chunks, self.num_negatives),
                                   generator=generator).to(device)
        p = (torch.full((len(batch),), 0.5) if self.tail_prob is None
             else self.tail_prob[batch[:, 1].cpu()])
        corrupt_tail = (torch.rand(len(batch), generator=generator) < p).to(device)
        return NegativeBatch(candidates, corrupt_tail)


def bernoulli_tail_probability(train: Tensor, num_relations: int) -> Tensor:
    """``(R,)``: P(corrupt tail) = tph / (tph + hpt), so 1-N relations corrupt the head more."""
    h, r, t = train[:, 0], train[:, 1], train[:, 2]
    pairs_hr = torch.unique(torch.stack([r, h], 1), dim=0)
    pairs_rt = torch.unique(torch.stack([r, t], 1), dim=0)
    count = torch.bincount(r, minlength=num_relations).float()
    heads_per_r = torch.bincount(pairs_hr[:, 0], minlength=num_relations).float().clamp_min(1)
    tails_per_r = torch.bincount(pairs_rt[:, 0], minlength=num_relations).float().clamp_min(1)
    tph = count / heads_per_r
    hpt = count / tails_per_r
    return torch.where(count > 0, hpt / (tph + hpt), torch.full_like(count, 0.5))
