"""Self-adversarial negative sampling loss (Sun et al. 2019) over shared-chunk negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch


def self_adversarial(pos: Tensor, neg: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Per-positive losses: ``pos`` (B,), ``neg`` (B, K) -> (B,), (B,).

    Negative weights are ``softmax(temperature * score)``, detached as in RotatE.
    """
    weights = torch.softmax(temperature * neg.detach(), dim=-1)
    return -F.logsigmoid(pos), -(weights * F.logsigmoid(-neg)).sum(-1)


def kge_loss(model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
             temperature: float) -> Tensor:
    """Mean self-adversarial loss of ``batch`` (B, 3) with head and tail corruptions."""
    pos, neg_tail, neg_head = score_with_negatives(model, batch, negatives)
    pos_loss, tail_loss = self_adversarial(pos, neg_tail, temperature)
    _, head_loss = self_adversarial(pos, neg_head, temperature)
    if negatives.corrupt_tail is not None:
        neg_loss = torch.where(negatives.corrupt_tail, tail_loss, head_loss)
    else:
        neg_loss = 0.5 * (tail_loss + head_loss)
    return 0.5 * (pos_loss.mean() + neg_loss.mean())


def score_with_negatives(model: MultimodalKGE, batch: Tensor,
                         negatives: NegativeBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of positives ``(B,)`` and of tail / head corruptions ``(B, K)``.

    All entities of the batch and its negatives are embedded in one call, so each distinct
    entity is projected and fused once per step.
    """
    b = len(batch)
    chunks, k = negatives.tails.shape
    size = -(-b // chunks)
    ids = torch.cat([batch[:, 0], batch[:, 2], negatives.tails.reshape(-1),
                     negatives.heads.reshape(-1)])
    emb = model.entity_embeddings(ids)
    h, t = emb[:b], emb[b:2 * b]
    neg_t = emb[2 * b:2 * b + chunks * k].reshape(chunks, 1, k, -1)
    neg_h = emb[2 * b + chunks * k:].reshape(chunks, 1, k, -1)
    r = model.relation[batch[:, 1]]
    scorer = model.scorer
    q_tail = scorer.query(h, r, "tail")
    q_head = scorer.query(t, r, "head")
    pos = scorer.match(q_tail, t)
    pad = chunks * size - b

    def against(query: Tensor, cands: Tensor) -> Tensor:
        if pad:
            query = torch.cat([query, query[:pad]])
        scores = scorer.match(query.reshape(chunks, size, 1, -1), cands)  # (C, S, K)
        return scores.reshape(chunks * size, k)[:b]

    return pos, against(q_tail, neg_t), against(q_head, neg_h)
