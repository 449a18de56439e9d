"""dhns: multimodal knowledge graph completion with diffusion-based hierarchical negatives.

The Python API (:mod:`dhns.api`): ``dhns.load(checkpoint, dataset)`` returns a
:class:`~dhns.api.TrainedModel` with ``predict_tails`` / ``predict_heads`` by names.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Prediction", "TrainedModel", "load"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import dhns.config`` (every stage, the CLI's --help) must not pay for torch and
    # the model code, nor make them a dependency of the data stages.
    if name in __all__:
        return getattr(importlib.import_module("dhns.api"), name)
    raise AttributeError(f"module 'dhns' has no attribute {name!r}")
