"""Feature stages: per-entity text and image feature tables (``FeatureTable``).

Heavy dependencies (transformers, timm) are imported lazily so ``import dhns.features`` and
:func:`load_precomputed` stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dhns.features.precomputed import load_precomputed
from dhns.features.table import FeatureTable

if TYPE_CHECKING:  # pragma: no cover
    from dhns.features.image import build_image_model, extract_image_features
    from dhns.features.text import TextEncoder, extract_text_features

__all__ = [
    "FeatureTable",
    "TextEncoder",
    "build_image_model",
    "extract_image_features",
    "extract_text_features",
    "load_precomputed",
]

_LAZY = {
    "extract_text_features": "dhns.features.text",
    "TextEncoder": "dhns.features.text",
    "extract_image_features": "dhns.features.image",
    "build_image_model": "dhns.features.image",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dhns.features' has no attribute {name!r}")
