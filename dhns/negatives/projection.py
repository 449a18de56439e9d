"""Where the generated negatives sit among the real entities: a 2-D PCA around a few queries.

For each query ``(h, r, ?)`` the points are the fused embeddings of the real entities nearest
to its answer ``t``, and several generated tails ``t^_k`` per hardness level (independent
reverse chains of one diffusion model). PCA is fitted per query on those points, so each panel of
``figures/projection.png`` shows one neighbourhood at its own scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.negatives.hierarchical import HierarchicalLevels
from dhns.negatives.ntat import embed_with_generated

#: Columns of the projection CSV.
COLUMNS = ("query", "kind", "entity", "x", "y")


def pca_2d(points: Tensor) -> Tensor:
    """``(n, D)`` -> ``(n, 2)``: coordinates on the two leading principal axes."""
    centred = points - points.mean(0, keepdim=True)
    # Full SVD of a (n, D) block with n in the hundreds: exact, no random projection.
    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    return (centred.double() @ vh[:2].T).float()


@torch.no_grad()
def projection_rows(model: MultimodalKGE, hier: HierarchicalLevels, queries: Tensor,
                    filter_index: FilterIndex, rng: torch.Generator, neighbours: int = 150,
                    draws: int = 8) -> list[dict]:
    """Rows of :data:`COLUMNS` for ``queries`` ``(Q, 3)`` training triples.

    ``kind`` is ``answer`` (the triple's tail), ``known answer`` (another true tail of
    ``(h, r)``), ``entity`` (any other of the ``neighbours`` real entities nearest to the
    answer) or ``level_k`` (a generated tail at the ``k``-th level, 1 the hardest; ``draws``
    chains per level). ``entity`` is the entity id, -1 for generated points.
    """
    batch = queries.repeat_interleave(draws, dim=0)
    negatives = hier.generate(model, batch, rng)
    *_, t_hat = embed_with_generated(model, negatives)  # (L, Q * draws, D)
    table = model.all_entity_embeddings()
    levels = t_hat.shape[0]
    rows: list[dict] = []
    for q, (head, relation, tail) in enumerate(queries.tolist()):
        distance = (table - table[tail]).norm(dim=-1)
        near = distance.topk(min(neighbours, len(table)), largest=False).indices
        generated = t_hat[:, q * draws:(q + 1) * draws].reshape(levels * draws, -1)
        coords = pca_2d(torch.cat([table[near], generated])).tolist()
        _, known = filter_index.answers(torch.tensor([head]), torch.tensor([relation]), "tail")
        known_set = set(known.tolist())
        for i, entity in enumerate(near.tolist()):
            kind = ("answer" if entity == tail else
                    "known answer" if entity in known_set else "entity")
            rows.append({"query": q, "kind": kind, "entity": entity,
                         "x": round(coords[i][0], 4), "y": round(coords[i][1], 4)})
        for j in range(levels * draws):
            x, y = coords[len(near) + j]
            rows.append({"query": q, "kind": f"level_{j // draws + 1}", "entity": -1,
                         "x": round(x, 4), "y": round(y, 4)})
    return rows
