"""Cross-entropy training regimes (``kge.loss``) and N3 regularisation.

Every positive ``(h, r, t)`` gives two queries, ``(h, r, ?)`` with answer ``t`` and
``(?, r, t)`` with answer ``h`` (with reciprocal relations the second is ``(t, r^-1, ?)``),
scored against candidate entities by the model's own ``query``/``match_all``:

- ``1vsall``: softmax cross-entropy over all ``N`` entities (Lacroix et al. 2018);
- ``kvsall``: binary cross-entropy against every entity, the targets being all training
  answers of the query (Dettmers et al. 2018), per positive of the batch;
- ``shared``: softmax cross-entropy over the answer and one pool of ``P`` random entities
  shared by the whole batch, an estimate of ``1vsall`` at ``P / N`` of its scoring cost.

All take ``label_smoothing`` (``1vsall``/``shared``: torch's; ``kvsall``: targets
``(1 - e) y + e / N``). ``1vsall`` and ``shared`` also take ``extra`` candidates given as
constant embeddings ``(2B, E, D)`` per query (DHNS's generated negatives), whose logits are
shifted by ``extra_log_prior`` ``(E,)`` (a prior weight per hardness level) and join each
query's softmax as further wrong answers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE


def _queries(model: MultimodalKGE, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
    """``(2B, D)``: the tail queries of ``(h, r)`` then the head queries of ``(r, t)``."""
    scorer = model.scorer
    return torch.cat([scorer.query(h, r, "tail"), scorer.query(t, r, "head")])


def _with_extra(model: MultimodalKGE, logits: Tensor, queries: Tensor, extra: Tensor | None,
                extra_log_prior: Tensor | None) -> Tensor:
    """``logits`` (2B, C) with the ``extra`` candidates' shifted logits appended (2B, C + E)."""
    if extra is None:
        return logits
    scores = model.scorer.match(queries[:, None], extra)  # (2B, E)
    if extra_log_prior is not None:
        scores = scores + extra_log_prior
    return torch.cat([logits, scores], dim=1)


def one_vs_all_loss(model: MultimodalKGE, batch: Tensor, label_smoothing: float = 0.0,
                    extra: Tensor | None = None, extra_log_prior: Tensor | None = None
                    ) -> Tensor:
    """Mean softmax cross-entropy of ``batch`` (B, 3)'s ``2B`` queries over all entities
    (and ``extra``)."""
    entities = model.all_entity_embeddings()  # (N, D), in the graph
    h, r, t = entities[batch[:, 0]], model.relation[batch[:, 1]], entities[batch[:, 2]]
    queries = _queries(model, h, r, t)
    logits = model.scorer.match_all(queries[None], entities[None])[0]
    logits = _with_extra(model, logits, queries, extra, extra_log_prior)
    target = torch.cat([batch[:, 2], batch[:, 0]])
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def k_vs_all_loss(model: MultimodalKGE, batch: Tensor, known: FilterIndex,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean binary cross-entropy of ``batch``'s ``2B`` queries against every entity, the
    positive labels being all answers ``known`` (the training graph) gives each query."""
    entities = model.all_entity_embeddings()
    h, r, t = entities[batch[:, 0]], model.relation[batch[:, 1]], entities[batch[:, 2]]
    logits = model.scorer.match_all(_queries(model, h, r, t)[None], entities[None])[0]
    b = len(batch)
    labels = torch.zeros_like(logits)
    for offset, (anchor, side) in enumerate(((batch[:, 0], "tail"), (batch[:, 2], "head"))):
        rows, cols = known.answers(anchor.cpu(), batch[:, 1].cpu(), side)
        labels[rows.to(logits.device) + offset * b, cols.to(logits.device)] = 1.0
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / logits.shape[1]
    return F.binary_cross_entropy_with_logits(logits, labels)


def shared_pool_loss(model: MultimodalKGE, batch: Tensor, pool_size: int,
                     generator: torch.Generator, label_smoothing: float = 0.0,
                     extra: Tensor | None = None, extra_log_prior: Tensor | None = None
                     ) -> Tensor:
    """Mean softmax cross-entropy of ``batch``'s ``2B`` queries over their answer and one pool
    of ``pool_size`` entities drawn (with replacement) from ``generator``; a pool entry equal
    to the query's answer is left out of that query's softmax."""
    n = model.config.num_entities
    pool = torch.randint(n, (pool_size,), generator=generator).to(batch.device)
    emb = model.entity_embeddings(torch.cat([batch[:, 0], batch[:, 2], pool]))
    b = len(batch)
    h, t, pooled = emb[:b], emb[b:2 * b], emb[2 * b:]
    r = model.relation[batch[:, 1]]
    queries = _queries(model, h, r, t)
    answers = torch.cat([t, h])
    scorer = model.scorer
    positive = scorer.match(queries, answers)  # (2B,)
    negative = scorer.match_all(queries[None], pooled[None])[0]  # (2B, P)
    target = torch.cat([batch[:, 2], batch[:, 0]])
    keep = torch.cat([torch.ones_like(target[:, None], dtype=torch.bool),
                      pool[None] != target[:, None]], dim=1)  # (2B, 1 + P)
    logits = torch.cat([positive[:, None], negative], dim=1)
    logits = _with_extra(model, logits, queries, extra, extra_log_prior)
    if extra is not None:
        keep = torch.cat([keep, torch.ones_like(logits[:, keep.shape[1]:], dtype=torch.bool)], 1)
    logits = logits.masked_fill(~keep, -math.inf)
    log_p = torch.log_softmax(logits, dim=1)
    loss = -log_p[:, 0]
    if label_smoothing:  # torch's smoothing would spread mass onto the left-out entries (-inf)
        spread = -log_p.masked_fill(~keep, 0.0).sum(1) / keep.sum(1)
        loss = (1.0 - label_smoothing) * loss + label_smoothing * spread
    return loss.mean()


def n3_penalty(model: MultimodalKGE, batch: Tensor) -> Tensor:
    """N3 (Lacroix et al. 2018): mean over ``batch`` of the summed cubed moduli of the fused
    ``h`` and ``t`` embeddings (complex coordinates for RotatE and ComplEx), and of ``r`` for
    the bilinear models (RotatE's relations are phases, TransE's are translations)."""
    emb = model.entity_embeddings(batch[:, [0, 2]])  # (B, 2, D)
    scorer = model.scorer
    d = scorer.dim
    total = _cubed_moduli(emb, d if scorer.entity_factor == 2 else None).sum(dim=1)
    if scorer.name in ("distmult", "complex"):
        relation = model.relation[batch[:, 1]]
        total = total + _cubed_moduli(relation, d if scorer.name == "complex" else None)
    return total.mean()


def _cubed_moduli(x: Tensor, block: int | None) -> Tensor:
    """``(..., W)`` -> ``(...)``: sum of ``|x_i|^3`` over coordinates. With ``block`` = d the
    row is blocks ``[re | im]`` of d each (two pairs for reciprocal relations) and ``|.|`` is
    the complex modulus."""
    if block is None:
        return x.abs().pow(3).sum(-1)
    pairs = x.reshape(*x.shape[:-1], -1, 2, block)
    modulus = torch.sqrt(pairs[..., 0, :] ** 2 + pairs[..., 1, :] ** 2 + 1e-30)
    return modulus.pow(3).flatten(-2).sum(-1)
