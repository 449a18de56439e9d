"""Filter index for filtered link-prediction ranking.

All known triples (train + valid + test) are stored twice in CSR form: once keyed by
``(head, relation)`` with the tails as values (tail prediction) and once keyed by
``(tail, relation)`` with the heads as values (head prediction). A query batch is answered with
``searchsorted`` + ``repeat_interleave``, so there is no Python loop per triple or per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DIRECTIONS = ("head", "tail")


@dataclass(frozen=True)
class _CSR:
    """Sorted unique keys ``(K,)``, offsets ``(K + 1,)`` and concatenated values ``(n,)``."""

    keys: Tensor
    offsets: Tensor
    values: Tensor


def _build_csr(anchor: Tensor, relation: Tensor, answer: Tensor, num_relations: int) -> _CSR:
    """Group ``answer`` by ``key = anchor * R + relation`` (inputs are deduplicated triples)."""
    key = anchor * num_relations + relation
    # Sort by (key, answer): a stable sort on answer, then a stable sort on key.
    order = torch.argsort(answer, stable=True)
    order = order[torch.argsort(key[order], stable=True)]
    key, values = key[order], answer[order]
    keys, counts = torch.unique_consecutive(key, return_counts=True)
    offsets = torch.zeros(len(keys) + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    return _CSR(keys=keys, offsets=offsets, values=values)


class FilterIndex:
    """Known true answers of ``(anchor, relation, direction)`` queries.

    Args:
        triples: ``(n, 3)`` int64 ``(head, relation, tail)``, usually ``kg.all_triples()``;
            duplicates are fine.
        num_relations: ``R``; inferred as ``max(relation) + 1`` when ``None``.

    ``direction="tail"`` means "predict the tail of ``(anchor=head, relation, ?)``";
    ``direction="head"`` means "predict the head of ``(?, relation, anchor=tail)``".
    """

    def __init__(self, triples: Tensor, num_relations: int | None = None) -> None:
        triples = torch.as_tensor(triples, dtype=torch.int64).cpu()
        if triples.ndim != 2 or triples.shape[1] != 3:
            raise ValueError(f"triples must be (n, 3), got {tuple(triples.shape)}")
        if num_relations is None:
            num_relations = int(triples[:, 1].max()) + 1 if len(triples) else 1
        elif len(triples) and int(triples[:, 1].max()) >= num_relations:
            raise ValueError("a relation id is >= num_relations")
        self.num_relations = int(num_relations)
        triples = torch.unique(triples, dim=0)
        self.num_triples = len(triples)
        h, r, t = triples.unbind(1)
        self._csr = {
            "tail": _build_csr(h, r, t, self.num_relations),
            "head": _build_csr(t, r, h, self.num_relations),
        }

    def answers(self, anchors: Tensor, relations: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        """All known answers of a query batch, as flat index tensors.

        Args:
            anchors: ``(B,)`` the known entity (head for ``"tail"``, tail for ``"head"``).
            relations: ``(B,)``.
            direction: ``"head"`` or ``"tail"``: the side being predicted.

        Returns:
            ``(rows, cols)``, both ``(M,)`` int64 on CPU: query ``rows[i]`` has the known true
            answer entity ``cols[i]``. Rows are non-decreasing. The query's own target is
            included (callers that filter must keep it themselves).
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        csr = self._csr[direction]
        anchors = torch.as_tensor(anchors, dtype=torch.int64).cpu().reshape(-1)
        relations = torch.as_tensor(relations, dtype=torch.int64).cpu().reshape(-1)
        if anchors.shape != relations.shape:
            raise ValueError("anchors and relations must have the same length")
        empty = torch.zeros(0, dtype=torch.int64)
        if len(csr.keys) == 0 or len(anchors) == 0:
            return empty, empty.clone()
        query = anchors * self.num_relations + relations
        pos = torch.searchsorted(csr.keys, query).clamp_max_(len(csr.keys) - 1)
        found = csr.keys[pos] == query
        start = torch.where(found, csr.offsets[pos], 0)
        counts = torch.where(found, csr.offsets[pos + 1] - csr.offsets[pos], 0)
        rows = torch.repeat_interleave(torch.arange(len(query)), counts)
        # Position of each output element inside its query's group: i - first index of its row.
        first = torch.cumsum(counts, 0) - counts
        within = torch.arange(len(rows)) - first[rows]
        cols = csr.values[start[rows] + within]
        return rows, cols

    def __len__(self) -> int:
        return self.num_triples

    def __repr__(self) -> str:
        return f"FilterIndex(triples={self.num_triples}, relations={self.num_relations})"
