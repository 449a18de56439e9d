"""NSCaching (Zhang et al., "NSCaching: Simple and Efficient Negative Sampling for Knowledge
Graph Embedding", ICDE 2019).

A cache of ``cache_size`` high-scoring candidates per ``(h, r)`` (tail side) and per
``(r, t)`` (head side). A positive draws its negatives uniformly from the cache of the side
it corrupts; then every cache the batch touched is refreshed: its entries plus
``fresh_candidates`` uniform entities are scored by the model, and ``cache_size`` of them are
kept by importance sampling without replacement, ``P ∝ exp(temperature * score)`` (done as
Gumbel top-k, so one draw per row and no Python loop).

As in the paper: the cache starts uniform, is updated for the batch's keys at every step,
and negatives come from the cache only. Unlike it: known training answers of the key are
never cached (``exclude_known``; the paper has no filter, so caches of 1-N relations fill with
false negatives), and a positive's own entity is replaced by a uniform draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dhns.config import COUNT, POSITIVE, num
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.samplers.base import (
    NegativeSampler,
    SamplerContext,
    anchor_entities,
    own_entities,
    replace_own,
)
from dhns.samplers.registry import register

SIDES = ("tail", "head")


@dataclass
class NSCachingOptions:
    cache_size: int = num(50, COUNT)  # N1 of the paper
    fresh_candidates: int = num(50, COUNT)  # N2: uniform entities joining each refresh
    temperature: float = num(1.0, POSITIVE)  # on the model's scores in the refresh softmax
    exclude_known: bool = True  # never cache a known training answer of the key


@register
class NSCachingSampler(NegativeSampler):
    name = "nscaching"
    Options = NSCachingOptions
    per_positive = True
    uses_model = True
    cost = ("per step, scores (cache_size + fresh_candidates) entities for every distinct "
            "(h, r) and (r, t) of the batch; two caches of cache_size ids per key")

    def __init__(self, context: SamplerContext, num_negatives: int, options=None,
                 chunk_size: int = 64) -> None:
        super().__init__(context, num_negatives, options, chunk_size)
        h, r, t = context.train.cpu().unbind(1)
        nr = max(1, context.num_relations)
        # Side 0 (tail): keyed by h * R + r; side 1 (head): by t * R + r (FilterIndex's keys).
        self.keys = [torch.unique(h * nr + r), torch.unique(t * nr + r)]
        self.known = FilterIndex(context.train, nr) if self.options.exclude_known else None
        self.caches: list[Tensor] | None = None

    def _rows(self, side: int, anchors: Tensor, relations: Tensor) -> Tensor:
        keys = self.keys[side]
        query = anchors.cpu() * max(1, self.context.num_relations) + relations.cpu()
        pos = torch.searchsorted(keys, query).clamp_max_(len(keys) - 1)
        if not bool((keys[pos] == query).all()):
            raise ValueError("nscaching: a batch triple's (entity, relation) is not in training")
        return pos

    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        if model is None:
            raise ValueError("negative sampler nscaching scores candidates with the model: "
                             "pass it to sample()")
        size = self.options.cache_size
        if self.caches is None:  # uniform start, from the training generator
            self.caches = [torch.randint(self.num_entities, (len(k), size), generator=generator)
                           for k in self.keys]
        corrupt_tail = self.corrupt_sides(batch, generator)
        anchors = anchor_entities(batch, corrupt_tail).cpu()
        relations = batch[:, 1].cpu()
        side = (~corrupt_tail).long()  # 0: tail cache, 1: head cache
        rows = torch.empty(len(batch), dtype=torch.long)
        cached = torch.empty(len(batch), size, dtype=torch.long)
        for s in (0, 1):
            at = side == s
            rows[at] = self._rows(s, anchors[at], relations[at])
            cached[at] = self.caches[s][rows[at]]
        picks = torch.randint(size, (len(batch), self.num_negatives), generator=generator)
        candidates = cached.gather(1, picks)
        own = own_entities(batch, corrupt_tail).cpu()
        candidates = replace_own(candidates, own, self.num_entities, generator)
        self._refresh(model, anchors, relations, side, rows, generator)
        return NegativeBatch(candidates.to(batch.device), corrupt_tail.to(batch.device))

    @torch.no_grad()
    def _refresh(self, model: MultimodalKGE, anchors: Tensor, relations: Tensor, side: Tensor,
                 rows: Tensor, generator: torch.Generator) -> None:
        """Importance-resample the caches of the keys the batch touched."""
        opts = self.options
        device = model.entity.device
        table = model.all_entity_embeddings()  # one fusion pass serves both sides
        for s in (0, 1):
            at = side == s
            if not bool(at.any()):
                continue
            keys, first = _unique_first(rows[at])
            anchor, relation = anchors[at][first], relations[at][first]
            fresh = torch.randint(self.num_entities, (len(keys), opts.fresh_candidates),
                                  generator=generator)
            pool = torch.cat([self.caches[s][keys], fresh], 1)  # (U, size + fresh)
            query = model.scorer.query(table[anchor.to(device)],
                                       model.relation[relation.to(device)], SIDES[s])
            scores = model.scorer.match(query[:, None], table[pool.to(device)])
            logits = opts.temperature * scores.float().cpu()
            if self.known is not None:
                # (key row, entity) pairs as one integer: the pool's known answers by isin,
                # without a (keys, N) mask per step.
                qrows, cols = self.known.answers(anchor, relation, SIDES[s])
                n = self.num_entities
                key_rows = torch.arange(len(keys))[:, None]
                known = torch.isin(key_rows * n + pool, qrows * n + cols)
                logits = logits.masked_fill(known, -torch.inf)
            # Sampling without replacement in proportion to exp(logits): Gumbel top-k.
            uniform = torch.rand(logits.shape, generator=generator).clamp_(1e-12, 1 - 1e-7)
            keep = (logits - torch.log(-torch.log(uniform))).topk(opts.cache_size, 1).indices
            self.caches[s][keys] = pool.gather(1, keep)

    def state_dict(self) -> dict[str, Tensor]:
        if self.caches is None:
            return {}
        return {"tail_cache": self.caches[0].clone(), "head_cache": self.caches[1].clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if not state:
            self.caches = None
            return
        caches = [state["tail_cache"].long().clone(), state["head_cache"].long().clone()]
        for s, cache in enumerate(caches):
            if cache.shape != (len(self.keys[s]), self.options.cache_size):
                raise ValueError(f"nscaching: a saved {SIDES[s]} cache of shape "
                                 f"{tuple(cache.shape)} does not fit this graph and cache_size "
                                 f"({len(self.keys[s])}, {self.options.cache_size})")
        self.caches = caches


def _unique_first(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct values of ``rows`` and the index of each one's first occurrence."""
    keys, inverse = torch.unique(rows, return_inverse=True)
    first = torch.full((len(keys),), len(rows), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
    return keys, first
