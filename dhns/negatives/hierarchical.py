"""Hierarchical negatives: generated entity embeddings at several hardness levels
(docs/method.md, section 4).

For a batch of positives, every stream (modality x direction) runs one conditional reverse
chain, all streams batched through the denoiser together; the states at the level timesteps
``t_k`` replace the entity's modality embeddings, which are then fused by the KGE's own
attention into ``h^_k`` and ``t^_k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dhns.diffusion.model import DiffusionModel
from dhns.kge.model import MultimodalKGE


@dataclass
class GeneratedNegatives:
    """Generated per-modality embeddings for a batch of positives.

    ``tails`` / ``heads``: ``(L, M, B, D)`` replacement embeddings for modality rows that were
    generated, with ``tail_generated`` / ``head_generated`` ``(M, B)`` bool saying which
    (modality, positive) pairs have a generated row (others keep the real embedding).
    """

    batch: Tensor
    tails: Tensor
    heads: Tensor
    tail_generated: Tensor
    head_generated: Tensor


class HierarchicalLevels:
    """Runs the frozen (or jointly trained) diffusion model to produce
    :class:`GeneratedNegatives`."""

    def __init__(self, diffusion: DiffusionModel, level_fractions: list[float],
                 sampling_steps: int | None) -> None:
        self.diffusion = diffusion
        self.levels = diffusion.level_steps(level_fractions)
        self.sampling_steps = sampling_steps
        self.streams = [s.split(":") for s in diffusion.modalities]

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @torch.no_grad()
    def generate(self, model: MultimodalKGE, batch: Tensor, generator: torch.Generator
                 ) -> GeneratedNegatives:
        """``batch`` (B, 3) -> generated embeddings for its heads and tails at every level."""
        b = len(batch)
        emb, mask = model.modality_embeddings(torch.cat([batch[:, 0], batch[:, 2]]))
        rel = model.relation[batch[:, 1]]
        num_mod = len(model.modalities)
        conds, stream_ids, rows = [], [], []
        for s, (modality, direction) in enumerate(self.streams):
            m = model.modalities.index(modality)
            anchor = emb[m, :b] if direction == "tail" else emb[m, b:]
            anchor_mask = mask[m, :b] if direction == "tail" else mask[m, b:]
            # Only condition on an anchor modality that exists; the generated entity then
            # has that modality too.
            keep = anchor_mask.nonzero().squeeze(1)
            conds.append(model.scorer.condition(anchor[keep], rel[keep], direction))
            stream_ids.append(torch.full((len(keep),), s, dtype=torch.long,
                                         device=batch.device))
            rows.append((m, direction, keep))
        states = self.diffusion.generate_levels(torch.cat(conds), torch.cat(stream_ids),
                                              self.levels, self.sampling_steps, generator)
        levels, width = states.shape[0], states.shape[-1]
        out = {d: emb.new_zeros(levels, num_mod, b, width) for d in ("tail", "head")}
        gen_mask = {d: torch.zeros(num_mod, b, dtype=torch.bool, device=batch.device)
                    for d in ("tail", "head")}
        start = 0
        for m, direction, keep in rows:
            out[direction][:, m, keep] = states[:, start:start + len(keep)]
            gen_mask[direction][m, keep] = True
            start += len(keep)
        return GeneratedNegatives(batch, out["tail"], out["head"], gen_mask["tail"],
                                  gen_mask["head"])


class RandomLevels(HierarchicalLevels):
    """The control of :class:`HierarchicalLevels` (``retrain.ha_source: random``): every level's
    rows are the modality embeddings of real entities drawn uniformly (among those that have
    every modality the diffusion model generates), in place of the generated states. NTAT's
    term keeps its weight, levels and scoring, so an arm with it tells what the diffusion
    model's choice of negatives adds over the term's extra negative gradient alone."""

    @torch.no_grad()
    def generate(self, model: MultimodalKGE, batch: Tensor, generator: torch.Generator
                 ) -> GeneratedNegatives:
        """``batch`` (B, 3) -> per level, random real entities' rows ``(L, M, B, D)``."""
        b, levels, num_mod = len(batch), self.num_levels, len(model.modalities)
        covered = {d: torch.zeros(num_mod, b, dtype=torch.bool, device=batch.device)
                   for d in ("tail", "head")}
        has_all = torch.ones(model.config.num_entities, dtype=torch.bool, device=batch.device)
        masks = {name: mask for name, _, mask in model.feature_tables()}
        for modality, direction in self.streams:
            covered[direction][model.modalities.index(modality)] = True
            if modality in masks:
                has_all &= masks[modality]
        pool = has_all.nonzero().squeeze(1)
        pick = torch.randint(len(pool), (2 * levels * b,), generator=generator,
                             device=generator.device).to(batch.device)
        emb, _ = model.modality_embeddings(pool[pick])  # (M, 2 L B, D)
        drawn = emb.reshape(num_mod, 2, levels, b, -1).permute(1, 2, 0, 3, 4)
        return GeneratedNegatives(batch, drawn[0] * covered["tail"][None, :, :, None],
                                  drawn[1] * covered["head"][None, :, :, None],
                                  covered["tail"], covered["head"])
