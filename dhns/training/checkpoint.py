"""The one checkpoint format: ``{"format", "kind", "config", "state_dict", "meta"}``.

``kind`` is ``"kge"`` (a :class:`MultimodalKGE`) or ``"sampler"`` (a diffusion sampler);
``config`` is what rebuilds the module, ``meta`` is free-form provenance (dataset, params,
training history). Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dhns.io import atomic_torch_save
from dhns.kge.model import KGEModelConfig, MultimodalKGE

FORMAT = "dhns-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a dhns checkpoint of the expected kind."""


def save_checkpoint(path: str | Path, kind: str, module: nn.Module, config: dict,
                    meta: dict | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    atomic_torch_save(path, {"format": FORMAT, "kind": kind, "config": config,
                             "state_dict": state, "meta": meta or {}})


def read_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc.__class__.__name__})"
                              ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dhns checkpoint (expected format {FORMAT})")
    if obj["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {obj['kind']} checkpoint, expected {kind}")
    return obj


def save_kge(path: str | Path, model: MultimodalKGE, meta: dict | None = None) -> None:
    save_checkpoint(path, "kge", model, model.config.to_dict(), meta)


def load_kge(path: str | Path, device: torch.device | str = "cpu"
             ) -> tuple[MultimodalKGE, dict[str, Any]]:
    """Rebuild a KGE from its checkpoint; returns ``(model in eval mode, meta)``."""
    obj = read_checkpoint(path, "kge")
    model = MultimodalKGE(KGEModelConfig(**obj["config"]))
    model.load_state_dict(obj["state_dict"])
    return model.to(device).eval(), obj["meta"]


def save_sampler(path: str | Path, sampler: nn.Module, meta: dict | None = None) -> None:
    save_checkpoint(path, "sampler", sampler, dict(sampler.hparams), meta)


def load_sampler(path: str | Path, device: torch.device | str = "cpu"):
    """Rebuild a :class:`DiffusionSampler`; returns ``(sampler in eval mode, meta)``."""
    from dhns.diffusion.sampler import DiffusionSampler

    obj = read_checkpoint(path, "sampler")
    sampler = DiffusionSampler(**obj["config"])
    sampler.load_state_dict(obj["state_dict"])
    return sampler.to(device).eval(), obj["meta"]
