"""The feature table every feature stage produces and the KGE consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dhns.io import atomic_torch_save

FORMAT = "dhns.FeatureTable/1"


@dataclass
class FeatureTable:
    """Per-entity features of one modality.

    Attributes:
        features: ``(N, d)`` float32, row ``i`` = entity id ``i``. Rows whose mask is False are
            all zeros and carry no information.
        mask: ``(N,)`` bool, True where the entity has this modality.
        meta: JSON-friendly provenance (model name, ``dim``, counts, timings, ...).

    A *disabled* modality (see :meth:`empty`) is ``(N, 1)`` zeros with an all-False mask: one
    column rather than zero so that code building a projection ``Linear(d, k)`` never meets
    ``d = 0``; the KGE skips any modality whose mask is all False.
    """

    features: torch.Tensor
    mask: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

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
        return {"format": FORMAT, "features": self.features, "mask": self.mask,
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> FeatureTable:
        missing = {"features", "mask"} - set(obj)
        if missing:
            raise ValueError(f"not a FeatureTable dict: missing {sorted(missing)}")
        return cls(features=obj["features"], mask=obj["mask"], meta=dict(obj.get("meta") or {}))

    def save(self, path: str | Path) -> None:
        """Atomic ``torch.save`` of :meth:`to_dict` (no pickled classes, so loading is safe)."""
        atomic_torch_save(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a FeatureTable dict, got {type(obj).__name__}")
        try:
            return cls.from_dict(obj)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
