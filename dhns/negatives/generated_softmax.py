"""Generated negatives inside the self-adversarial softmax (``retrain.mined: generated``).

NTAT scores the generated negatives in a separate term, L_HA, with its own positives and
fixed level margins. Here they are candidates of the ordinary loss instead: for each training
triple and side, the fused embedding the diffusion model generates at every hardness level sits
beside the uniform negatives of the self-adversarial loss (Sun et al. 2019), with logits
``alpha * score + log w_k`` (``w_k``: the level's prior weight, ``retrain.level_weights``).
A generated negative then carries weight exactly when the model scores it high, like any
other negative, and no second positive term appears. Generated rows are constants, so their
gradient reaches the query side (``h`` and ``r`` for a corrupted tail) only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.kge.loss import score_with_negatives, self_adversarial
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.negatives.hierarchical import HierarchicalLevels
from dhns.negatives.mined import TripleRows
from dhns.negatives.ntat import embed_with_generated


@torch.no_grad()
def generate_for_triples(model: MultimodalKGE, hier: HierarchicalLevels, triples: Tensor,
                         generator: torch.Generator, batch_size: int = 512) -> Tensor:
    """``(n, 2, L, D)`` fused generated embeddings of every triple: side 0 the generated tails
    ``t^_k`` of ``(h, r, ?)``, side 1 the generated heads ``h^_k`` of ``(?, r, t)``, hardest
    level first. Kept on the CPU (the store is ``n * 2 * L * D`` floats)."""
    parts = []
    for start in range(0, len(triples), batch_size):
        part = triples[start:start + batch_size].to(model.relation.device)
        _, _, _, h_hat, t_hat = embed_with_generated(model, hier.generate(model, part, generator))
        parts.append(torch.stack([t_hat, h_hat], dim=0).permute(2, 0, 1, 3).cpu())
    return torch.cat(parts)


class GeneratedCandidates(TripleRows):
    """Per training triple and side, the ``L`` generated embeddings of the last generation.

    ``level_weights`` (L,) are the levels' prior weights in the softmax (> 0).
    """

    def __init__(self, triples: Tensor, num_entities: int, num_relations: int,
                 level_weights: list[float]) -> None:
        super().__init__(triples, num_entities, num_relations)
        self.log_prior = torch.tensor(level_weights, dtype=torch.float32).log()
        self.embeddings: Tensor | None = None

    def store(self, mined: Tensor) -> None:
        if mined.shape[:3] != (len(self.keys), 2, len(self.log_prior)):
            raise ValueError(f"generated store of shape {tuple(mined.shape)} for "
                             f"{len(self.keys)} triples and {len(self.log_prior)} levels")
        self.embeddings = mined

    def coverage(self) -> float:
        return 0.0 if self.embeddings is None else 1.0

    def loss(self, model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
             temperature: float) -> Tensor:
        side = (~negatives.corrupt_tail.cpu()).long()
        generated = self._stored()[self.rows(batch), side].to(batch.device)
        return generated_loss(model, batch, negatives, generated,
                              self.log_prior.to(batch.device), temperature)

    def both_sides(self, batch: Tensor) -> Tensor:
        """``(2B, L, D)``: the generated tails of ``batch``'s tail queries, then the generated
        heads of its head queries (the query order of :mod:`dhns.kge.cross_entropy`)."""
        stored = self._stored()[self.rows(batch)]  # (B, 2, L, D)
        return torch.cat([stored[:, 0], stored[:, 1]]).to(batch.device)

    def _stored(self) -> Tensor:
        if self.embeddings is None:
            raise RuntimeError("no generated negatives stored yet")
        return self.embeddings


def generated_loss(model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
                   generated: Tensor, log_prior: Tensor, temperature: float) -> Tensor:
    """Mean self-adversarial loss of ``batch`` (B, 3) over its uniform ``negatives`` plus the
    ``generated`` (B, L, D) embeddings for the corrupted side, level ``k``'s logit shifted by
    ``log_prior[k]`` (uniform columns by 0)."""
    pos, uniform, extra = score_with_negatives(model, batch, negatives,
                                               extra_embeddings=generated)
    neg = torch.cat([uniform, extra], dim=1)  # (B, K + L)
    prior = torch.cat([log_prior.new_zeros(uniform.shape[1]), log_prior])
    pos_loss, neg_loss = self_adversarial(pos, neg, temperature, log_prior=prior)
    return 0.5 * (pos_loss.mean() + neg_loss.mean())
