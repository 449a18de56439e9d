"""Self-adversarial negative sampling loss (Sun et al. 2019) over shared-chunk negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.kge.scoring import Reciprocal


def self_adversarial(pos: Tensor, neg: Tensor, temperature: float,
                     keep: Tensor | None = None,
                     log_prior: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-positive losses: ``pos`` (B,), ``neg`` (B, K) -> (B,), (B,).

    Negative weights are ``softmax(temperature * score)``, detached as in RotatE. ``keep``
    (B, K) bool gives the negatives outside it weight exactly 0 (padding slots; their scores
    must still be finite). ``log_prior`` (K,) is added to the logits: a prior weight per
    column (per hardness level for generated negatives).
    """
    logits = temperature * neg.detach()
    if log_prior is not None:
        logits = logits + log_prior
    if keep is not None:
        logits = logits.masked_fill(~keep, -math.inf)
    weights = torch.softmax(logits, dim=-1)
    return -F.logsigmoid(pos), -(weights * F.logsigmoid(-neg)).sum(-1)


def kge_loss(model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
             temperature: float) -> Tensor:
    """Mean self-adversarial loss of ``batch`` (B, 3), each positive corrupting one side."""
    pos, neg = score_with_negatives(model, batch, negatives)
    pos_loss, neg_loss = self_adversarial(pos, neg, temperature)
    return 0.5 * (pos_loss.mean() + neg_loss.mean())


def score_with_negatives(model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
                         extra: Tensor | None = None, extra_embeddings: Tensor | None = None
                         ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Scores of positives ``(B,)`` and of their corruptions ``(B, K)``.

    All entities of the batch and its negatives are embedded in one call, so each distinct
    entity is projected and fused once per step. A positive that corrupts its tail is scored
    by its query ``h * r`` against the candidates, one that corrupts its head by ``t * conj(r)``.
    With ``extra`` ``(B, E)`` per-positive candidate ids for the corrupted side (mined hard
    negatives; any id, callers mask padding), their scores ``(B, E)`` are returned third;
    ``extra_embeddings`` ``(B, E, D)`` does the same for candidates given as fused embeddings
    (generated negatives: constants, so only the query side gets their gradient).
    """
    if extra is not None and extra_embeddings is not None:
        raise ValueError("give extra candidates as ids or as embeddings, not both")
    b = len(batch)
    chunks, k = negatives.candidates.shape
    size = -(-b // chunks)
    parts = [batch[:, 0], batch[:, 2], negatives.candidates.reshape(-1)]
    if extra is not None:
        parts.append(extra.reshape(-1))
    emb = model.entity_embeddings(torch.cat(parts))
    h, t = emb[:b], emb[b:2 * b]
    cands = emb[2 * b:2 * b + chunks * k].reshape(chunks, k, -1)
    r = model.relation[batch[:, 1]]
    scorer = model.scorer
    pos = scorer.score(h, r, t)
    if isinstance(scorer, Reciprocal):  # a head-corrupting positive is a (t, r^-1, ?) query
        pos = torch.where(negatives.corrupt_tail, pos, scorer.score_head(h, r, t))
    tail = negatives.corrupt_tail[:, None]
    query = torch.where(tail, scorer.query(h, r, "tail"), scorer.query(t, r, "head"))
    if extra is not None:
        extra_embeddings = emb[2 * b + chunks * k:].reshape(*extra.shape, -1)
    if extra_embeddings is not None:
        extra_scores = scorer.match(query[:, None], extra_embeddings)  # (B, E)
    pad = chunks * size - b
    if pad:
        query = torch.cat([query, query[:pad]])
    neg = scorer.match_all(query.reshape(chunks, size, -1), cands)  # (C, S, K)
    neg = neg.reshape(chunks * size, k)[:b]
    return (pos, neg) if extra_embeddings is None else (pos, neg, extra_scores)
