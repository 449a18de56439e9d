"""The feature table every feature stage produces and the KGE consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dhns.data.vocabulary import Vocabulary, check_vocabulary
from dhns.errors import UserError
from dhns.io import atomic_torch_save

FORMAT = "dhns.FeatureTable/1"
REBUILD = "rerun its feature stage on this dataset"


@dataclass
class FeatureTable:
    """Per-entity features of one modality.

    Attributes:
        features: ``(N, d)`` float32, row ``i`` = entity id ``i``. Rows whose mask is False are
            all zeros and carry no information.
        mask: ``(N,)`` bool, True where the entity has this modality.
        meta: JSON-friendly provenance (model name, ``dim``, counts, timings, ...).
        vocabulary: the graph whose entity ids the rows follow; None until a feature stage
            stamps it (a table without one is refused by :meth:`load` against a graph).

    A *disabled* modality (see :meth:`empty`) is ``(N, 1)`` zeros with an all-False mask: one
    column rather than zero so that code building a projection ``Linear(d, k)`` never meets
    ``d = 0``; the KGE skips any modality whose mask is all False.
    """

    features: torch.Tensor
    mask: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    vocabulary: Vocabulary | None = None

    def __post_init__(self) -> None:
        if self.features.dim() != 2:
            raise ValueError(f"features must be 2-D (N, d), got shape {tuple(self.features.shape)}")
        if self.mask.shape != (self.features.shape[0],):
            raise ValueError(
                f"mask must have shape ({self.features.shape[0]},), got {tuple(self.mask.shape)}"
            )
        self.features = self.features.detach().to("cpu", torch.float32).contiguous()
        self.mask = self.mask.detach().to("cpu", torch.bool).contiguous()

    @property
    def num_entities(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def enabled(self) -> bool:
        """False when no entity has this modality (the KGE then skips it)."""
        return bool(self.mask.any())

    @classmethod
    def empty(cls, num_entities: int, reason: str = "disabled") -> FeatureTable:
        """``(N, 1)`` zeros with an all-False mask: a modality switched off."""
        return cls(
            features=torch.zeros(num_entities, 1),
            mask=torch.zeros(num_entities, dtype=torch.bool),
            meta={"disabled": True, "reason": reason, "dim": 1, "num_entities": num_entities,
                  "with_modality": 0},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors, str, numbers) that ``torch.load(weights_only=True)`` reads."""
        obj = {"format": FORMAT, "features": self.features, "mask": self.mask,
               "meta": dict(self.meta)}
        if self.vocabulary is not None:
            obj["vocabulary"] = self.vocabulary.to_dict()
        return obj

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> FeatureTable:
        missing = {"features", "mask"} - set(obj)
        if missing:
            raise UserError(f"not a FeatureTable dict: missing {sorted(missing)}")
        return cls(features=obj["features"], mask=obj["mask"], meta=dict(obj.get("meta") or {}),
                   vocabulary=Vocabulary.from_dict(obj.get("vocabulary")))

    def save(self, path: str | Path) -> None:
        """Atomic ``torch.save`` of :meth:`to_dict` (no pickled classes, so loading is safe)."""
        atomic_torch_save(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, vocabulary: Vocabulary | None = None,
             graph_source: str | Path = "the dataset") -> FeatureTable:
        """Read what :meth:`save` wrote.

        With ``vocabulary`` (that of the graph the table will be used with, read from
        ``graph_source``), refuse a table whose rows follow other entity ids, or that records
        none: raises :class:`~dhns.data.vocabulary.VocabularyError`.
        """
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise UserError(f"{path}: expected a FeatureTable dict, got {type(obj).__name__}")
        try:
            table = cls.from_dict(obj)
        except ValueError as exc:  # the file's tensors do not make a table (__post_init__)
            raise UserError(f"{path}: {exc}") from None
        if vocabulary is not None:
            check_vocabulary(path, table.vocabulary, vocabulary, graph_source, REBUILD)
        return table


def load_tables(paths: dict[str, Path], modalities: list[str], vocabulary: Vocabulary,
                source: str | Path) -> dict[str, FeatureTable]:
    """The tables of ``paths`` (modality -> file) that ``modalities`` asks for and that exist,
    each checked against ``vocabulary`` (``source`` names it in a mismatch)."""
    return {name: FeatureTable.load(path, vocabulary, source)
            for name, path in paths.items() if name in modalities and Path(path).exists()}
