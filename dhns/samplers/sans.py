"""SANS (Ahrabian et al., "Structure Aware Negative Sampling in Knowledge Graphs",
EMNLP 2020), in its random-walk form (RW-SANS).

Negatives come from the ``hops``-hop neighbourhood of the entity a positive keeps (its head
when the tail is corrupted): entities structurally close to the anchor are harder to tell
apart from the answer than uniform ones, at no scoring cost. The neighbourhood is
approximated, as RW-SANS does, by ``walks`` random walks of ``hops`` steps from every entity
over the undirected training graph; every entity visited is a candidate, so memory is
``N * walks * hops`` ids rather than a dense k-hop matrix (hubs make that one near N^2).

Each positive draws ``round(uniform_share * K)`` of its ``K`` negatives uniformly (the paper
mixes in uniform ones too, so isolated entities and small neighbourhoods still see the rest of
the graph), the others from its anchor's walk table; a positive's own entity (often the first
step of a walk) is replaced by a uniform draw. The table is built on the first call, from that
call's generator, and saved as the sampler's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dhns.config import COUNT, FRACTION, num
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.samplers.base import NegativeSampler, anchor_entities, own_entities, replace_own
from dhns.samplers.registry import register


@dataclass
class SANSOptions:
    hops: int = num(2, COUNT)  # k: neighbourhood radius
    walks: int = num(32, COUNT)  # random walks per entity
    uniform_share: float = num(0.25, FRACTION)  # of the K negatives, drawn uniformly


@register
class SANSSampler(NegativeSampler):
    name = "sans"
    Options = SANSOptions
    per_positive = True
    cost = "no scoring; a walk table of N * walks * hops ids, built once"

    table: Tensor | None = None

    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        if self.table is None:
            self.table = random_walk_table(self.context.train, self.num_entities,
                                           self.options.walks, self.options.hops, generator)
        corrupt_tail = self.corrupt_sides(batch, generator)
        anchors = anchor_entities(batch, corrupt_tail).cpu()
        k = self.num_negatives
        n_uniform = round(self.options.uniform_share * k)
        picks = torch.randint(self.table.shape[1], (len(batch), k - n_uniform),
                              generator=generator)
        near = self.table[anchors[:, None], picks]
        far = torch.randint(self.num_entities, (len(batch), n_uniform), generator=generator)
        candidates = torch.cat([near, far], 1)
        own = own_entities(batch, corrupt_tail).cpu()
        candidates = replace_own(candidates, own, self.num_entities, generator)
        return NegativeBatch(candidates.to(batch.device), corrupt_tail.to(batch.device))

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.table is None else {"walk_table": self.table.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        table = state.get("walk_table")
        if table is not None and table.shape[0] != self.num_entities:
            raise ValueError(f"sans: a saved walk table for {table.shape[0]} entities does not "
                             f"fit this graph ({self.num_entities})")
        self.table = None if table is None else table.long().clone()


def random_walk_table(train: Tensor, num_entities: int, walks: int, hops: int,
                      generator: torch.Generator) -> Tensor:
    """``(N, walks * hops)``: the entities visited by ``walks`` random walks of ``hops`` steps
    from each entity over the undirected graph of ``train`` (a walk at an isolated entity
    stays there)."""
    h, t = train[:, 0].cpu(), train[:, 2].cpu()
    src, dst = torch.cat([h, t]), torch.cat([t, h])
    edges = torch.unique(torch.stack([src, dst], 1), dim=0)  # sorted by source
    edges = edges[edges[:, 0] != edges[:, 1]]
    degree = torch.bincount(edges[:, 0], minlength=num_entities)
    offsets = torch.zeros(num_entities + 1, dtype=torch.long)
    torch.cumsum(degree, 0, out=offsets[1:])
    here = torch.arange(num_entities).repeat_interleave(walks)
    if len(edges) == 0:  # no edge anywhere: every walk stays home
        return here.view(num_entities, walks).repeat(1, hops)
    visited = []
    for _ in range(hops):
        deg = degree[here]
        # floor(u * deg) is in [0, deg); the clamp guards float rounding at u close to 1.
        step = torch.minimum((torch.rand(len(here), generator=generator) * deg).long(),
                             (deg - 1).clamp_min(0))
        nxt = edges[(offsets[here] + step).clamp_max(len(edges) - 1), 1]
        here = torch.where(deg > 0, nxt, here)
        visited.append(here.view(num_entities, walks))
    return torch.cat(visited, 1)
