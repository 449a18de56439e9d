"""MANS-style modality-aware negatives (after Zhang et al., "Modality-Aware Negative Sampling
for Multi-modal Knowledge Graph Embedding", IJCNN 2023).

Negatives are real entities that look like the replaced entity in the text and image feature
space: for every entity its ``neighbours`` nearest entities by cosine similarity of its
standardised text and image features (the frozen tables the model was built with, each
modality L2-normalised, then concatenated; an entity lacking a modality gets zeros there).
A positive draws ``round(uniform_share * K)`` negatives uniformly and the rest from the
neighbour list of its own entity on the corrupted side; an entity with no feature at all
draws uniformly only.

Where this differs from the paper: MANS builds *modality-level* negatives, pairing an
entity's structure embedding with another entity's visual embedding, to align the two
spaces. Those are not entities, so they do not fit a sampler of entity ids; this sampler
keeps the paper's premise (the modalities say which entities are confusable) and draws real
entities by it. The neighbour table is a pure function of the model's feature buffers,
rebuilt on the first call, so it holds no state to save.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.config import COUNT, FRACTION, num
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.samplers.base import NegativeSampler, own_entities, replace_own
from dhns.samplers.registry import register


@dataclass
class MANSOptions:
    neighbours: int = num(64, COUNT)  # nearest entities kept per entity
    uniform_share: float = num(0.5, FRACTION)  # of the K negatives, drawn uniformly


@register
class MANSSampler(NegativeSampler):
    name = "mans"
    Options = MANSOptions
    per_positive = True
    uses_model = True  # reads the model's frozen feature tables once
    cost = "no scoring per step; one N x N cosine pass (in blocks) on the first step"

    neighbours: Tensor | None = None  # (N, neighbours) ids
    has_features: Tensor | None = None  # (N,) bool

    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        if self.neighbours is None:
            if model is None:
                raise ValueError("negative sampler mans reads the model's feature tables: "
                                 "pass the model to sample()")
            self.neighbours, self.has_features = feature_neighbours(
                model, self.options.neighbours)
        corrupt_tail = self.corrupt_sides(batch, generator)
        own = own_entities(batch, corrupt_tail).cpu()
        k = self.num_negatives
        n_uniform = round(self.options.uniform_share * k)
        picks = torch.randint(self.neighbours.shape[1], (len(batch), k - n_uniform),
                              generator=generator)
        near = self.neighbours[own[:, None], picks]
        candidates = torch.randint(self.num_entities, (len(batch), k), generator=generator)
        hard = self.has_features[own][:, None]
        candidates[:, n_uniform:] = torch.where(hard, near, candidates[:, n_uniform:])
        candidates = replace_own(candidates, own, self.num_entities, generator)
        return NegativeBatch(candidates.to(batch.device), corrupt_tail.to(batch.device))


@torch.no_grad()
def feature_neighbours(model: MultimodalKGE, k: int, block: int = 1024
                       ) -> tuple[Tensor, Tensor]:
    """``(N, k)`` nearest other entities by feature cosine, and ``(N,)`` which entities have
    any feature (rows of the others are meaningless). Structure-only models: none have."""
    parts, present = [], torch.zeros(model.config.num_entities, dtype=torch.bool)
    for _, table, mask in model.feature_tables():
        table, mask = table.float().cpu(), mask.cpu()
        parts.append(F.normalize(table, dim=1) * mask[:, None])
        present |= mask
    n = model.config.num_entities
    k = min(k, n - 1)
    if not parts:
        return torch.zeros(n, k, dtype=torch.long), present
    feats = F.normalize(torch.cat(parts, 1), dim=1)
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, block):
        sims = feats[start:start + block] @ feats.T
        sims[torch.arange(len(sims)), torch.arange(start, start + len(sims))] = -torch.inf
        sims[:, ~present] = -torch.inf
        out[start:start + block] = sims.topk(k, 1).indices
    return out, present
