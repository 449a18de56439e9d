"""The classic corruption samplers, shared per chunk of positives.

- ``uniform``: each positive corrupts its head or its tail with a fair coin, candidates
  uniform over all entities (Bordes et al. 2013; RotatE and PyKEEN's default).
- ``bernoulli``: the side follows Wang et al. 2014 (TransH): P(corrupt tail) =
  hpt / (tph + hpt), so a 1-to-N relation mostly corrupts its head.

Candidates are shared by chunks of ``chunk_size`` positives: one ``(K,)`` id set per chunk
serves both sides, because tail queries ``h * r`` and head queries ``t * conj(r)`` are both
matched against entity embeddings. ``K`` rather than ``S * K`` embeddings are gathered per
chunk, and each positive still sees ``K`` negatives. A shared candidate may equal a
positive's own entity (probability ``K / N``), as in those references.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.samplers.base import NegativeSampler, SamplerContext
from dhns.samplers.registry import register


@register
class UniformSampler(NegativeSampler):
    name = "uniform"
    cost = "none: one (C, K) draw per step"

    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        chunks = -(-len(batch) // self.chunk_size)
        # Draw order (candidates, then sides) is part of the results: keep it.
        candidates = torch.randint(self.num_entities, (chunks, self.num_negatives),
                                   generator=generator).to(batch.device)
        corrupt_tail = self.corrupt_sides(batch, generator).to(batch.device)
        return NegativeBatch(candidates, corrupt_tail)


@register
class BernoulliSampler(UniformSampler):
    name = "bernoulli"
    cost = "none: uniform candidates, the side by relation"

    def __init__(self, context: SamplerContext, num_negatives: int, options=None,
                 chunk_size: int = 64) -> None:
        super().__init__(context, num_negatives, options, chunk_size)
        self.tail_prob = bernoulli_tail_probability(context.train, context.num_relations)

    def corrupt_sides(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        return torch.rand(len(batch), generator=generator) < self.tail_prob[batch[:, 1].cpu()]


def bernoulli_tail_probability(train: Tensor, num_relations: int) -> Tensor:
    """``(R,)``: P(corrupt tail) = hpt / (tph + hpt), so 1-N relations corrupt the head more."""
    h, r, t = train[:, 0], train[:, 1], train[:, 2]
    pairs_hr = torch.unique(torch.stack([r, h], 1), dim=0)
    pairs_rt = torch.unique(torch.stack([r, t], 1), dim=0)
    count = torch.bincount(r, minlength=num_relations).float()
    heads_per_r = torch.bincount(pairs_hr[:, 0], minlength=num_relations).float().clamp_min(1)
    tails_per_r = torch.bincount(pairs_rt[:, 0], minlength=num_relations).float().clamp_min(1)
    tph = count / heads_per_r
    hpt = count / tails_per_r
    return torch.where(count > 0, hpt / (tph + hpt), torch.full_like(count, 0.5))


def uniform_sampler(num_entities: int, num_negatives: int, chunk_size: int = 64
                    ) -> UniformSampler:
    """The ``uniform`` sampler over ``num_entities`` (it needs nothing else of the graph)."""
    return UniformSampler(SamplerContext(num_entities), num_negatives, chunk_size=chunk_size)
