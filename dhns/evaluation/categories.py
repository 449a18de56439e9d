"""Relation categories 1-1 / 1-n / n-1 / n-n (Bordes et al. 2013; Wang et al. 2014).

For each relation, over the distinct training triples:

* ``tph`` (tails per head) = #triples / #distinct heads,
* ``hpt`` (heads per tail) = #triples / #distinct tails.

With threshold 1.5: ``1-1`` if both < 1.5, ``1-n`` if only ``tph >= 1.5``, ``n-1`` if only
``hpt >= 1.5`` and ``n-n`` if both are. Indices follow ``CATEGORY_NAMES`` (0..3). A relation
absent from ``train`` has no statistics and is put in ``1-1`` (index 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.data.kg import CATEGORY_NAMES, KnowledgeGraph

THRESHOLD = 1.5


def _distinct_pairs_per_relation(rel: Tensor, ent: Tensor, num_relations: int) -> Tensor:
    """``(R,)`` number of distinct ``(relation, entity)`` pairs per relation."""
    n_ent = int(ent.max()) + 1 if len(ent) else 1
    pairs = torch.unique(rel * n_ent + ent)
    return torch.bincount(pairs // n_ent, minlength=num_relations)


def relation_categories(
    train: Tensor, num_relations: int, threshold: float = THRESHOLD
) -> Tensor:
    """Category of every relation.

    Args:
        train: ``(n, 3)`` int64 ``(head, relation, tail)`` (duplicates are ignored).
        num_relations: ``R``.
        threshold: the tph / hpt cut-off (1.5 by convention).

    Returns:
        ``(R,)`` int64 in 0..3, indices into ``CATEGORY_NAMES``.
    """
    train = torch.unique(torch.as_tensor(train, dtype=torch.int64).cpu(), dim=0)
    h, r, t = train.unbind(1)
    n_triples = torch.bincount(r, minlength=num_relations).double()
    heads = _distinct_pairs_per_relation(r, h, num_relations).double()
    tails = _distinct_pairs_per_relation(r, t, num_relations).double()
    tph = n_triples / heads.clamp_min(1)
    hpt = n_triples / tails.clamp_min(1)
    # 1-1 = 0, 1-n = 1 (many tails), n-1 = 2 (many heads), n-n = 3.
    return (tph >= threshold).long() + 2 * (hpt >= threshold).long()


def triple_categories(triples: Tensor, relation_categories: Tensor) -> Tensor:
    """``(n,)`` int64 category of each triple of ``triples`` ``(n, 3)``: its relation's."""
    triples = torch.as_tensor(triples, dtype=torch.int64)
    return relation_categories.to(triples.device)[triples[:, 1]]


def kg_test_categories(kg: KnowledgeGraph) -> Tensor:
    """``(n_test,)`` categories of ``kg.test``: ``kg.test_categories`` if set, else from train."""
    if kg.test_categories is not None:
        return kg.test_categories
    return triple_categories(kg.test, relation_categories(kg.train, kg.num_relations))


__all__ = [
    "CATEGORY_NAMES",
    "THRESHOLD",
    "kg_test_categories",
    "relation_categories",
    "triple_categories",
]
