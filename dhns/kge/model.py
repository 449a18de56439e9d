"""The multimodal KGE backbone (docs/method.md, section 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from dhns.kge.fusion import ModalityFusion
from dhns.kge.scoring import Direction, Scorer, make_scorer

STRUCTURE = "structure"


@dataclass
class KGEModelConfig:
    """Everything needed to rebuild a model from a checkpoint."""

    model: str
    dim: int
    gamma: float
    num_entities: int
    num_relations: int
    modalities: list[str] = field(default_factory=lambda: [STRUCTURE])
    feature_dims: dict[str, int] = field(default_factory=dict)
    reciprocal: bool = False  # a second relation embedding for each inverse (head queries)

    def to_dict(self) -> dict:
        return asdict(self)


class MultimodalKGE(nn.Module):
    """Structure embedding plus projected text/image features, fused by masked attention.

    Feature tables are buffers (saved in the checkpoint, never trained) so a checkpoint is
    self-contained: ``dhns evaluate`` needs no feature files.
    """

    def __init__(
        self,
        config: KGEModelConfig,
        features: dict[str, tuple[Tensor, Tensor]] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """``features`` maps modality name -> (table (N, d_m) float, mask (N,) bool).

        ``generator`` is the only source of the initial weights (torch's global RNG is never
        drawn from); ``None`` means one seeded with 0, for a model about to be loaded from a
        checkpoint.
        """
        super().__init__()
        generator = generator or torch.Generator().manual_seed(0)
        self.config = config
        self.scorer: Scorer = make_scorer(config.model, config.dim, config.gamma,
                                           config.reciprocal)
        width = self.scorer.entity_width
        init = self.scorer.embedding_range
        self.entity = nn.Parameter(_uniform((config.num_entities, width), init, generator))
        self.relation = nn.Parameter(
            _uniform((config.num_relations, self.scorer.relation_width), init, generator)
        )
        self.modalities = [STRUCTURE] + [m for m in config.modalities if m != STRUCTURE]
        self.projections = nn.ModuleDict()
        features = features or {}
        for name in self.modalities[1:]:
            dim = config.feature_dims[name]
            table, mask = features.get(name, (torch.zeros(config.num_entities, dim),
                                              torch.zeros(config.num_entities, dtype=torch.bool)))
            table = table.float()
            # Standardise features over the entities that have them: projections then start at
            # the same scale whatever the extractor.
            present = table[mask] if mask.any() else table
            # correction=0: the std of a single present row is 0 (clamped), not NaN.
            mean, std = present.mean(0), present.std(0, correction=0).clamp_min(1e-6)
            # where, not multiply: a NaN/inf in a missing row must not survive as NaN * 0.
            self.register_buffer(f"feat_{name}", torch.where(mask.unsqueeze(-1),
                                                             (table - mean) / std, 0.0))
            self.register_buffer(f"mask_{name}", mask.bool().clone())
            # skip_init: the weight is drawn below from ``generator``, never the global RNG.
            proj = nn.utils.skip_init(nn.Linear, dim, width, bias=False)
            nn.init.normal_(proj.weight, std=init / dim**0.5, generator=generator)
            self.projections[name] = proj
        self.fusion = ModalityFusion(width) if len(self.modalities) > 1 else None
        # Training sets this for :class:`dhns.optim.RowAdam`: gathers from the structure table
        # then give it a sparse gradient of the gathered rows, not a dense (N, D) one.
        self.sparse_gradients = False

    def reinitialised(self, generator: torch.Generator) -> MultimodalKGE:
        """A model of this architecture, with the same frozen feature tables and fresh weights
        drawn from ``generator``, on this model's device (``retrain.start: scratch``)."""
        tables = {name: (table, mask) for name, table, mask in self.feature_tables()}
        return MultimodalKGE(self.config, tables, generator).to(self.entity.device)

    def structure_rows(self, ids: Tensor) -> Tensor:
        """Rows of the trained structure table ``(*ids.shape, D)``."""
        if self.sparse_gradients:
            return nn.functional.embedding(ids, self.entity, sparse=True)
        return self.entity[ids]  # indexing's backward, kept bit-for-bit for dense runs

    # -- embeddings ------------------------------------------------------------------------
    def feature_tables(self) -> list[tuple[str, Tensor, Tensor]]:
        """``(modality, standardised feature table (N, d_m), mask (N,))`` of every modality
        but structure, in ``modalities`` order (frozen buffers)."""
        return [(name, getattr(self, f"feat_{name}"), getattr(self, f"mask_{name}"))
                for name in self.modalities[1:]]

    def modality_embeddings(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Per-modality embeddings of entities ``ids`` (n,): ``(M, n, D)`` and mask ``(M, n)``."""
        embs = [self.structure_rows(ids)]
        masks = [torch.ones_like(ids, dtype=torch.bool)]
        for name, table, mask in self.feature_tables():
            embs.append(self.projections[name](table[ids]))
            masks.append(mask[ids])
        return torch.stack(embs), torch.stack(masks)

    def fuse(self, embeddings: Tensor, mask: Tensor) -> Tensor:
        """``(M, n, D)``, ``(M, n)`` -> ``(n, D)``."""
        if self.fusion is None:
            return embeddings[0]
        return self.fusion(embeddings, mask)

    def entity_embeddings(self, ids: Tensor) -> Tensor:
        """Fused embeddings ``(*ids.shape, D)``; projects each distinct entity once."""
        flat = ids.reshape(-1)
        if self.fusion is None:
            return self.structure_rows(flat).reshape(*ids.shape, -1)
        unique, inverse = torch.unique(flat, return_inverse=True)
        fused = self.fuse(*self.modality_embeddings(unique))
        return fused[inverse].reshape(*ids.shape, -1)

    def all_entity_embeddings(self) -> Tensor:
        """``(N, D)`` fused table."""
        ids = torch.arange(self.config.num_entities, device=self.entity.device)
        if self.fusion is None:
            return self.entity
        return self.fuse(*self.modality_embeddings(ids))

    # -- scoring ---------------------------------------------------------------------------
    def score_triples(self, triples: Tensor) -> Tensor:
        """``(B, 3)`` (h, r, t) -> ``(B,)``."""
        emb = self.entity_embeddings(triples[:, [0, 2]])
        return self.scorer.score(emb[:, 0], self.relation[triples[:, 1]], emb[:, 1])

    def link_predictor(self) -> FrozenPredictor:
        """A ranking view with the fused entity table computed once (for evaluation)."""
        with torch.no_grad():
            return FrozenPredictor(self.all_entity_embeddings().detach(),
                                   self.relation.detach(), self.scorer)


class FrozenPredictor:
    """Implements the evaluator's ``score_tails`` / ``score_heads`` on a fixed entity table.

    Unfused, candidates are scored in chunks so ``(B, chunk, D)`` stays small: RotatE's
    distance is elementwise and memory-bound, so materialising ``(B, N, D)`` at once would be
    slower. A fused scorer (``kge.compile``) scores all candidates in one call.
    """

    def __init__(self, entities: Tensor, relations: Tensor, scorer: Scorer,
                 max_elements: int = 1 << 24) -> None:
        self.entities = entities
        self.relations = relations
        self.scorer = scorer
        self.max_elements = max_elements

    @property
    def device(self) -> torch.device:
        return self.entities.device

    def parameters(self):  # lets the evaluator find the device like for an nn.Module
        yield self.entities

    def _rank_all(self, anchors: Tensor, relations: Tensor, direction: Direction) -> Tensor:
        query = self.scorer.query(self.entities[anchors], self.relations[relations], direction)
        n, width = self.entities.shape
        if self.scorer.fused:  # nothing (B, chunk, D) is materialised: one call
            return self.scorer.match_all(query[None], self.entities[None])[0]
        chunk = max(1, self.max_elements // max(1, len(anchors) * width))
        out = torch.empty(len(anchors), n, device=self.device)
        for start in range(0, n, chunk):
            cand = self.entities[start:start + chunk]
            out[:, start:start + len(cand)] = self.scorer.match_all(query[None], cand[None])[0]
        return out

    def score_tails(self, heads: Tensor, relations: Tensor) -> Tensor:
        """``(B,)``, ``(B,)`` -> ``(B, N)``."""
        return self._rank_all(heads, relations, "tail")

    def score_heads(self, relations: Tensor, tails: Tensor) -> Tensor:
        """``(B,)``, ``(B,)`` -> ``(B, N)``."""
        return self._rank_all(tails, relations, "head")


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)
