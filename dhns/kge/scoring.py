"""Score functions: one method serves training, ranking and the diffusion condition.

Each scorer works on embedding tensors only (no lookup tables), LibKGE-style:
``score(h, r, t)`` broadcasts over leading dimensions, so the same code scores a batch of
positives ``(B, D)``, shared negatives ``(C, S, 1, D)`` against ``(C, 1, K, D)``, or
queries against all entities ``(B, 1, D)`` against ``(1, N, D)``. Higher is more plausible.

Entity width ``D`` and relation width ``Dr`` per model (``d`` = ``kge.dim``):

========  =====  ======  =====================================================
model     D      Dr      score
========  =====  ======  =====================================================
rotate    2d     d       gamma - sum_i |h_i * r_i - t_i|   (complex, |r_i| = 1)
transe    d      d       gamma - ||h + r - t||_1
distmult  d      d       sum h * r * t
complex   2d     2d      Re(sum h * r * conj(t))
========  =====  ======  =====================================================
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from dhns.kge.fused import MODULUS_FLOOR, pairwise_rotate_distance

Direction = Literal["tail", "head"]


class Scorer:
    """Base class. ``distance_based`` scorers have a margin ``gamma`` (NTAT level margins)."""

    name: str = ""
    distance_based: bool = False
    entity_factor: int = 1
    relation_factor: int = 1

    def __init__(self, dim: int, gamma: float) -> None:
        self.dim = dim
        self.gamma = gamma
        # RotatE-style init range; also the scale that maps relation embeddings to phases.
        self.embedding_range = (gamma + 2.0) / dim
        self.fused = False

    def fuse(self) -> bool:
        """Use fused (``torch.compile``) kernels in :meth:`match_all` where this model has one.

        Returns whether anything changed. Bilinear models need none: their all-pairs score is
        already a batched matrix product.
        """
        return False

    @property
    def entity_width(self) -> int:
        return self.entity_factor * self.dim

    @property
    def relation_width(self) -> int:
        return self.relation_factor * self.dim

    def condition(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        """Where the missing entity should be: ``(..., D)``.

        ``direction="tail"`` conditions on the head (query ``(h, r, ?)``), ``"head"`` on the
        tail. Parameter-free, mirrors the score function (docs/method.md, section 3).
        """
        return self.query(anchor, relation, direction)

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        raise NotImplementedError

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        """Score ``query`` (from :meth:`query`) against candidates; broadcasts, ``(...,)``."""
        raise NotImplementedError

    def match_all(self, query: Tensor, candidates: Tensor) -> Tensor:
        """Every query of a group against every candidate of that group.

        ``query`` ``(G, S, D)`` and ``candidates`` ``(G, K, D)`` -> ``(G, S, K)``. This is
        the hot path (shared negatives in training, all entities in ranking); the default
        broadcasts :meth:`match` over ``(G, S, K, D)``.
        """
        return self.match(query.unsqueeze(2), candidates.unsqueeze(1))

    def score(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Plausibility of ``(h, r, t)``, broadcasting over leading dims."""
        return self.match(self.query(h, r, "tail"), t)

    def distance(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """``gamma - score`` for distance models (what NTAT's level margins shift)."""
        return self.gamma - self.score(h, r, t)


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.chunk(2, dim=-1)


def _dot_all(query: Tensor, candidates: Tensor) -> Tensor:
    """Bilinear all-pairs scores: ``(G, S, D)``, ``(G, K, D)`` -> ``(G, S, K)``."""
    return torch.bmm(query, candidates.transpose(1, 2))


class RotatE(Scorer):
    name = "rotate"
    distance_based = True
    entity_factor = 2

    def _phase(self, r: Tensor) -> tuple[Tensor, Tensor]:
        phase = r / (self.embedding_range / math.pi)
        return torch.cos(phase), torch.sin(phase)

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        re, im = _split(anchor)
        cos, sin = self._phase(relation)
        if direction == "head":
            sin = -sin  # rotate by the conjugate: t * conj(r) should land on h
        return torch.cat([re * cos - im * sin, re * sin + im * cos], dim=-1)

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        q_re, q_im = _split(query)
        c_re, c_im = _split(candidate)
        dx, dy = q_re - c_re, q_im - c_im
        # Not hypot: its gradient at a zero difference is 0/0 = NaN (a self-loop triple under a
        # zero phase, say), and one NaN gradient makes every weight NaN; the floor makes it 0,
        # as in the fused kernel.
        return self.gamma - torch.sqrt(dx * dx + dy * dy + MODULUS_FLOOR).sum(dim=-1)

    def fuse(self) -> bool:
        self.fused = True
        return True

    def match_all(self, query: Tensor, candidates: Tensor) -> Tensor:
        if not self.fused:
            return super().match_all(query, candidates)
        return self.gamma - pairwise_rotate_distance(query, candidates)


class TransE(Scorer):
    name = "transe"
    distance_based = True

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        return anchor + relation if direction == "tail" else anchor - relation

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        return self.gamma - (query - candidate).abs().sum(dim=-1)


class DistMult(Scorer):
    name = "distmult"

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        return anchor * relation  # symmetric: the same for both directions

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        return (query * candidate).sum(dim=-1)

    def match_all(self, query: Tensor, candidates: Tensor) -> Tensor:
        return _dot_all(query, candidates)


class ComplEx(Scorer):
    name = "complex"
    entity_factor = 2
    relation_factor = 2

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        a_re, a_im = _split(anchor)
        r_re, r_im = _split(relation)
        if direction == "tail":  # h * r, matched against conj(t)
            return torch.cat([a_re * r_re - a_im * r_im, a_re * r_im + a_im * r_re], dim=-1)
        # Re(h r conj(t)) = Re(conj(r) t conj(h)): for heads the query is conj(r) * t
        return torch.cat([a_re * r_re + a_im * r_im, a_im * r_re - a_re * r_im], dim=-1)

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        q_re, q_im = _split(query)
        c_re, c_im = _split(candidate)
        return (q_re * c_re + q_im * c_im).sum(dim=-1)

    def match_all(self, query: Tensor, candidates: Tensor) -> Tensor:
        # Re(q conj(c)) summed = [q_re, q_im] . [c_re, c_im]: a plain dot product
        return _dot_all(query, candidates)


class Reciprocal(Scorer):
    """Reciprocal relations (Lacroix et al. 2018): every relation has a second embedding for
    its inverse, and a head query ``(?, r, t)`` is the tail query ``(t, r^-1, ?)`` of the
    base model. Relation rows are ``[forward | inverse]``, twice the base width.

    ``score(h, r, t)`` is the forward (tail-query) score; a head-corrupted positive is scored
    by :meth:`score_head` (what its negatives are compared against).
    """

    def __init__(self, base: Scorer) -> None:
        self.base = base  # first: Scorer.__init__ sets ``fused``, which lives on the base
        super().__init__(base.dim, base.gamma)
        self.name = base.name
        self.distance_based = base.distance_based
        self.entity_factor = base.entity_factor
        self.relation_factor = 2 * base.relation_factor
        self.embedding_range = base.embedding_range

    @property
    def fused(self) -> bool:
        return self.base.fused

    @fused.setter
    def fused(self, value: bool) -> None:
        self.base.fused = value

    def fuse(self) -> bool:
        return self.base.fuse()

    def query(self, anchor: Tensor, relation: Tensor, direction: Direction) -> Tensor:
        forward, inverse = relation.chunk(2, dim=-1)
        return self.base.query(anchor, forward if direction == "tail" else inverse, "tail")

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        return self.base.match(query, candidate)

    def match_all(self, query: Tensor, candidates: Tensor) -> Tensor:
        return self.base.match_all(query, candidates)

    def score_head(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Plausibility of ``(h, r, t)`` seen from its tail: ``(t, r^-1, h)``."""
        return self.match(self.query(t, r, "head"), h)


SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls for cls in (RotatE, TransE, DistMult, ComplEx)
}


def make_scorer(name: str, dim: int, gamma: float, reciprocal: bool = False) -> Scorer:
    """The score function ``name``; ``reciprocal`` wraps it in :class:`Reciprocal`."""
    try:
        scorer = SCORERS[name](dim, gamma)
    except KeyError:
        raise ValueError(f"unknown KGE model {name!r}; choose from {sorted(SCORERS)}") from None
    return Reciprocal(scorer) if reciprocal else scorer
