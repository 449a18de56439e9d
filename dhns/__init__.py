"""dhns: multimodal knowledge graph completion with diffusion-based hierarchical negatives.

The Python API: ``dhns.pipeline(dataset=..., **overrides)`` runs the whole pipeline and
returns a :class:`~dhns.runs.PipelineResult` (metrics, params, models, ``save``);
``dhns.load(checkpoint, dataset)`` (:mod:`dhns.api`) returns a :class:`~dhns.api.TrainedModel`
with ``predict_tails`` / ``predict_heads`` by names.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PipelineResult", "Prediction", "TrainedModel", "load", "pipeline"]
_HOMES = {"PipelineResult": "dhns.runs", "pipeline": "dhns.runs"}


def __getattr__(name: str) -> Any:
    # Lazy: ``import dhns.config`` (every stage, the CLI's --help) must not pay for torch and
    # the model code, nor make them a dependency of the data stages.
    if name in __all__:
        return getattr(importlib.import_module(_HOMES.get(name, "dhns.api")), name)
    raise AttributeError(f"module 'dhns' has no attribute {name!r}")
