"""Mined real negatives: per-positive hard candidates inside the self-adversarial softmax.

NTAT's generated negatives are constants, so no real entity ever gets a gradient from them,
and ranking is decided among real entities. Here the hard candidates are *real* entities,
mined for every training triple and each side, and scored next to the uniform negatives in
the ordinary self-adversarial loss (Sun et al. 2019), so the competitors that outrank the
answer are the ones pushed down. Two miners, the second being the control of the first:

- ``diffusion``: the real entities nearest (Euclidean, fused embedding space) to the negatives
  the diffusion model generates at each hardness level for the query;
- ``score``: the real entities the model itself scores highest for the query, no diffusion.

Both leave out every known answer of the query in the training graph (mined candidates that
are true answers would be false negatives) and the positive's own entity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from dhns.evaluation.filter import FilterIndex
from dhns.kge.candidates import CandidateStore
from dhns.kge.loss import score_with_negatives, self_adversarial
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.negatives.hierarchical import HierarchicalLevels
from dhns.negatives.ntat import embed_with_generated
from dhns.training.trainer import LossFn

#: Score given to padding slots (no candidate mined); their softmax weight is exactly 0.
PADDING_SCORE = -30.0
SIDES = ("tail", "head")


class TripleRows:
    """Finds the row of any training triple in a store aligned with ``triples``, by a sorted
    key, so batches may come in any order."""

    def __init__(self, triples: Tensor, num_entities: int, num_relations: int) -> None:
        self.num_entities, self.num_relations = num_entities, num_relations
        self.keys, self.order = self._keys(triples.cpu()).sort()

    def _keys(self, triples: Tensor) -> Tensor:
        h, r, t = triples.unbind(1)
        return (h * self.num_relations + r) * self.num_entities + t

    def rows(self, batch: Tensor) -> Tensor:
        """``(B,)`` row of each triple of ``batch`` (B, 3); every triple must be a training one."""
        keys = self._keys(batch.cpu())
        pos = torch.searchsorted(self.keys, keys).clamp_max_(len(self.keys) - 1)
        if not bool((self.keys[pos] == keys).all()):
            raise ValueError("mined candidates are looked up for a triple not in training")
        return self.order[pos]


class MinedCandidates(TripleRows):
    """Per training triple and side, up to ``k`` mined candidate entity ids (``-1``: none).

    ``ids`` is ``(n, 2, k)`` int64 aligned with ``triples`` (side 0: tail candidates for
    ``(h, r, ?)``, side 1: head candidates for ``(?, r, t)``).
    """

    def __init__(self, triples: Tensor, num_entities: int, num_relations: int, k: int) -> None:
        super().__init__(triples, num_entities, num_relations)
        self.ids = torch.full((len(triples), 2, k), -1, dtype=torch.long)

    def lookup(self, batch: Tensor, corrupt_tail: Tensor) -> Tensor:
        """``(B, k)`` candidate ids for the side each positive corrupts (``-1``: padding)."""
        rows = self.rows(batch)
        side = (~corrupt_tail.cpu()).long()  # 0 = tail candidates, 1 = head candidates
        return self.ids[rows, side].to(batch.device)

    def store(self, mined: Tensor) -> None:
        """Replace every row with a fresh mining ``(n, 2, k)``."""
        self.ids = mined

    def coverage(self) -> float:
        """Share of (triple, side) cells holding at least one candidate."""
        return float((self.ids[..., 0] >= 0).float().mean())

    def loss(self, model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch,
             temperature: float) -> Tensor:
        """:func:`mined_loss` of ``batch`` with its stored candidates."""
        return mined_loss(model, batch, negatives, self.lookup(batch, negatives.corrupt_tail),
                          temperature)


def _exclude_known(scores: Tensor, anchors: Tensor, relations: Tensor, side: str,
                   known: FilterIndex, own: Tensor) -> Tensor:
    """``scores`` (B, N) with every known answer and the positive's own entity at -inf."""
    rows, cols = known.answers(anchors, relations, side)
    scores = scores.clone()
    scores[rows.to(scores.device), cols.to(scores.device)] = -math.inf
    scores[torch.arange(len(own), device=scores.device), own] = -math.inf
    return scores


def _topk_ids(scores: Tensor, k: int) -> Tensor:
    """``(B, k)`` ids of the highest finite scores, ``-1`` where fewer than k are finite."""
    values, ids = scores.topk(min(k, scores.shape[1]), dim=1)
    return torch.where(torch.isfinite(values), ids, -1)


@torch.no_grad()
def mine_by_score(model: MultimodalKGE, triples: Tensor, known: FilterIndex, k: int,
                  batch_size: int = 512, pool: int = 0,
                  generator: torch.Generator | None = None) -> Tensor:
    """``(n, 2, k)``: for each triple, the ``k`` real entities the model scores highest as its
    tail (side 0) and as its head (side 1), known answers excluded.

    ``pool`` > 0 scores each batch of triples against that many random entities (drawn from
    ``generator``, shared by the batch) instead of all ``N``: a mining pass then costs
    ``pool / N`` of one, and the candidates are the hardest of the pool.
    """
    predictor = model.link_predictor()
    n = len(predictor.entities)
    out = torch.full((len(triples), 2, k), -1, dtype=torch.long)
    for start in range(0, len(triples), batch_size):
        part = triples[start:start + batch_size].to(predictor.device)
        h, r, t = part.unbind(1)
        if 0 < pool < n:
            ids = torch.randperm(n, generator=generator)[:pool].to(predictor.device)
            tails, heads = (_pool_scores(predictor, anchor, r, side, ids)
                            for anchor, side in ((h, "tail"), (t, "head")))
        else:
            tails, heads = predictor.score_tails(h, r), predictor.score_heads(r, t)
        tails = _exclude_known(tails, h, r, "tail", known, t)
        heads = _exclude_known(heads, t, r, "head", known, h)
        out[start:start + len(part), 0] = _topk_ids(tails, k).cpu()
        out[start:start + len(part), 1] = _topk_ids(heads, k).cpu()
    return out


def _pool_scores(predictor, anchors: Tensor, relations: Tensor, side: str, ids: Tensor
                 ) -> Tensor:
    """``(B, N)`` scores that are -inf outside the pool ``ids`` (P,)."""
    query = predictor.scorer.query(predictor.entities[anchors], predictor.relations[relations],
                                   side)
    pooled = predictor.scorer.match_all(query[None], predictor.entities[ids][None])[0]
    scores = pooled.new_full((len(anchors), len(predictor.entities)), -math.inf)
    scores[:, ids] = pooled
    return scores


@torch.no_grad()
def mine_by_diffusion(model: MultimodalKGE, hier: HierarchicalLevels, triples: Tensor,
                      known: FilterIndex, k: int, generator: torch.Generator,
                      batch_size: int = 512) -> Tensor:
    """``(n, 2, k)``: for each triple and side, the real entities nearest to the diffusion model's
    generated negatives, ``ceil(k / L)`` per hardness level, hardest level first (duplicates
    across levels are kept once, so a row may end with padding ``-1``)."""
    entities = model.all_entity_embeddings()  # (N, D)
    per_level = max(1, math.ceil(k / hier.num_levels))
    out = torch.full((len(triples), 2, k), -1, dtype=torch.long)
    for start in range(0, len(triples), batch_size):
        part = triples[start:start + batch_size].to(entities.device)
        h, r, t = part.unbind(1)
        negatives = hier.generate(model, part, generator)
        _, _, _, h_hat, t_hat = embed_with_generated(model, negatives)  # (L, B, D) each
        for side, (generated, anchor, own) in enumerate(((t_hat, h, t), (h_hat, t, h))):
            picks = []
            for level in generated:  # (B, D), hardest (smallest t) first
                closeness = -torch.cdist(level, entities)  # (B, N)
                closeness = _exclude_known(closeness, anchor, r, SIDES[side], known, own)
                picks.append(_topk_ids(closeness, per_level))
            out[start:start + len(part), side] = _first_unique(torch.cat(picks, 1), k).cpu()
    return out


def _first_unique(ids: Tensor, k: int) -> Tensor:
    """``(B, m)`` -> ``(B, k)``: each row's distinct non-negative ids in first-seen order,
    padded with ``-1``."""
    out = torch.full((len(ids), k), -1, dtype=torch.long, device=ids.device)
    for row, values in enumerate(ids.tolist()):
        seen = list(dict.fromkeys(v for v in values if v >= 0))[:k]
        out[row, :len(seen)] = torch.tensor(seen, dtype=torch.long)
    return out


def mined_loss(model: MultimodalKGE, batch: Tensor, negatives: NegativeBatch, mined: Tensor,
               temperature: float) -> Tensor:
    """Mean self-adversarial loss of ``batch`` (B, 3) over its uniform ``negatives`` plus its
    mined candidates ``mined`` (B, E) for the corrupted side; ``-1`` padding gets weight 0.

    With no mined candidate at all this is exactly :func:`dhns.kge.loss.kge_loss`.
    """
    valid = mined >= 0
    pos, uniform, extra = score_with_negatives(model, batch, negatives, mined.clamp_min(0))
    neg = torch.cat([uniform, torch.where(valid, extra, PADDING_SCORE)], dim=1)  # (B, K + E)
    keep = torch.cat([torch.ones_like(uniform, dtype=torch.bool), valid], dim=1)
    pos_loss, neg_loss = self_adversarial(pos, neg, temperature, keep)
    return 0.5 * (pos_loss.mean() + neg_loss.mean())


MineFn = Callable[[MultimodalKGE], Tensor]


class MinedNegativeLoss:
    """Trainer loss ``loss_fn`` whose per-triple candidates in ``cache`` are refreshed by
    ``mine`` every ``mine_every`` epochs (the first at step 0, on the starting weights).

    ``loss_fn`` reads ``cache`` (see :func:`dhns.training.kgc.kgc_loss`): self-adversarial
    over uniform plus mined or generated candidates, or cross-entropy with generated ones.
    """

    def __init__(self, loss_fn: LossFn, cache: CandidateStore, mine: MineFn,
                 steps_per_epoch: int, mine_every: int,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.loss_fn, self.cache, self.mine = loss_fn, cache, mine
        self.steps_per_epoch, self.mine_every = steps_per_epoch, mine_every
        self.log = log
        self.seconds_mining = 0.0
        self.minings = 0

    def __call__(self, model: MultimodalKGE, batch: Tensor, step: int
                 ) -> tuple[Tensor, dict[str, float]]:
        if step % (self.steps_per_epoch * self.mine_every) == 0:
            start = time.perf_counter()
            was_training = model.training
            model.eval()
            self.cache.store(self.mine(model))
            model.train(was_training)
            seconds = time.perf_counter() - start
            self.seconds_mining += seconds
            self.minings += 1
            self.log(f"mined negatives: {self.cache.coverage():.3f} of (triple, side) cells "
                     f"filled in {seconds:.1f}s")
        return self.loss_fn(model, batch, step)

    def report(self, epochs: int) -> dict:
        """Minings done, cells filled and mining time per epoch, for the stage's metrics."""
        return {"minings": self.minings, "mined_coverage": round(self.cache.coverage(), 4),
                "mine_seconds_per_epoch": round(self.seconds_mining / max(1, epochs), 2)}
