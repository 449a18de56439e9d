"""Likely false negatives among the generated ones: the real entity nearest to a generated
entity is a known answer of its query.

The hardest levels sit closest to the true answers (docs/method.md, section 4), so some of
them stand for an answer rather than a wrong entity; NTAT's term with force would push the
query away from those. :func:`nearest_real_entity` finds them (a diagnostic too) and
:func:`known_answer_keep` turns that into a mask of the generated negatives to keep
(``retrain.ha_exclude_known``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.kge.scoring import Direction


def answers_on(filter_index: FilterIndex, anchors: Tensor, relations: Tensor,
               direction: Direction, device: torch.device) -> tuple[Tensor, Tensor]:
    """The known answers of ``(anchor, relation, direction)`` queries as ``(rows, cols)``
    (query index, entity id) on ``device``."""
    rows, cols = filter_index.answers(anchors.cpu(), relations.cpu(), direction)
    return rows.to(device), cols.to(device)


@torch.no_grad()
def nearest_real_entity(model: MultimodalKGE, anchors: Tensor, relations: Tensor,
                        generated: Tensor, direction: Direction, filter_index: FilterIndex,
                        batch_size: int = 256, entities: Tensor | None = None,
                        exact: bool = True) -> tuple[Tensor, Tensor]:
    """The real entity nearest to each generated one, and whether it is a known answer.

    Nearest: Euclidean distance in the KGE's fused entity space, over all ``N`` entities. A
    generated negative whose nearest entity is a true answer of its query (its own target
    included) is a likely false negative.

    Args:
        anchors: ``(B,)`` the known entity (the head for ``direction="tail"``); relations
            ``(B,)``.
        generated: ``(L, B, D)`` fused generated entities for the missing side.
        filter_index: the true triples whose answers count as known.
        entities: ``(N, D)`` the fused entity table, if the caller has it already.
        exact: distances computed directly (a diagnostic's near-ties are decided right);
            False: by matrix products (16x faster at 256 x 15,000 x 500), for use in training.

    Returns:
        ``(nearest, known)``: ``(L, B)`` int64 entity ids and ``(L, B)`` bool, on the CPU.
    """
    if entities is None:
        entities = model.all_entity_embeddings()
    entities = entities.float()
    levels = generated.shape[0]
    ids, out = [], []
    for start in range(0, len(anchors), batch_size):
        gen = generated[:, start:start + batch_size].float().to(entities.device)  # (L, b, D)
        b = gen.shape[1]
        distance = torch.cdist(gen.reshape(levels * b, -1), entities,
                               compute_mode="donot_use_mm_for_euclid_dist" if exact
                               else "use_mm_for_euclid_dist")
        nearest = distance.argmin(1).reshape(levels, b)
        rows, cols = answers_on(filter_index, anchors[start:start + b],
                                relations[start:start + b], direction, entities.device)
        hits = torch.zeros(levels, b, dtype=torch.int64, device=entities.device)
        hits.index_add_(1, rows, (nearest[:, rows] == cols[None]).long())
        ids.append(nearest)
        out.append(hits > 0)
    return torch.cat(ids, 1).cpu(), torch.cat(out, 1).cpu()


@torch.no_grad()
def known_answer_keep(model: MultimodalKGE, batch: Tensor, h_hat: Tensor, t_hat: Tensor,
                      known: FilterIndex) -> Tensor:
    """Which of NTAT's generated negatives to keep: ``(3, L, B)`` bool over the types
    ``(h, r, t^)``, ``(h^, r, t)``, ``(h^, r, t^)``, False where a generated entity's nearest
    real entity is a known answer of its query (for ``(h^, r, t^)``: where either is).

    ``batch`` ``(B, 3)`` the positives; ``h_hat`` / ``t_hat`` ``(L, B, D)`` their fused
    generated heads and tails (:func:`~dhns.negatives.ntat.embed_with_generated`).
    """
    entities = model.all_entity_embeddings()
    h, r, t = batch.unbind(1)
    tail_known = nearest_real_entity(model, h, r, t_hat, "tail", known, entities=entities,
                                     exact=False)[1].to(batch.device)
    head_known = nearest_real_entity(model, t, r, h_hat, "head", known, entities=entities,
                                     exact=False)[1].to(batch.device)
    return torch.stack([~tail_known, ~head_known, ~(tail_known | head_known)])
