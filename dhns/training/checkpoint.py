"""The one checkpoint format: ``{"format", "kind", "config", "state_dict", "vocabulary", "meta"}``.

A KGE checkpoint may also hold ``"negative_sampler"``: the name, options and state of the
stateful negative sampler it was trained with (an NSCaching cache, a SANS walk table, ...).

``kind`` is ``"kge"`` (a :class:`MultimodalKGE`) or ``"diffusion"`` (a
:class:`~dhns.diffusion.model.DiffusionModel`; files written before 2026-12-03 say
``"sampler"``, still read);
``config`` is what rebuilds the module; ``vocabulary`` is the
:class:`~dhns.data.vocabulary.Vocabulary` of the graph whose entity and relation ids the
weights are indexed by (a diffusion model's is that of the KGE it learned from); ``meta`` is
free-form provenance (dataset, params, training history). Writes are atomic.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dhns.data.vocabulary import Vocabulary, check_vocabulary
from dhns.errors import UserError
from dhns.io import atomic_torch_save
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.samplers.base import NegativeSampler

FORMAT = "dhns-checkpoint/1"
#: Kinds renamed since: a file of the old name is read as the new kind.
LEGACY_KINDS = {"sampler": "diffusion"}
RETRAIN = "retrain it on this dataset or use the dataset it was trained on"


class CheckpointError(UserError):
    """A file that is not a dhns checkpoint of the expected kind."""


def save_checkpoint(path: str | Path, kind: str, module: nn.Module, config: dict,
                    meta: dict | None = None, *, vocabulary: Vocabulary,
                    extra: dict[str, Any] | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    atomic_torch_save(path, {"format": FORMAT, "kind": kind, "config": config,
                             "state_dict": state, "vocabulary": vocabulary.to_dict(),
                             "meta": meta or {}, **(extra or {})})


def read_checkpoint(path: str | Path, kind: str, vocabulary: Vocabulary | None = None,
                    graph_source: str | Path = "the dataset") -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked to be of ``kind``.

    With ``vocabulary`` (the graph it is about to be used with, read from ``graph_source``),
    also checked to be indexed by that graph's ids: raises
    :class:`~dhns.data.vocabulary.VocabularyError` otherwise, and for checkpoints that record
    no vocabulary (written before they did), since those cannot be checked.
    """
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
    if LEGACY_KINDS.get(obj["kind"], obj["kind"]) != kind:
        raise CheckpointError(f"{path}: holds a {obj['kind']} checkpoint, expected {kind}")
    if vocabulary is not None:
        check_vocabulary(path, checkpoint_vocabulary(obj), vocabulary, graph_source, RETRAIN)
    return obj


def checkpoint_vocabulary(obj: dict[str, Any]) -> Vocabulary | None:
    """The vocabulary a checkpoint dict records; None for one written before they did."""
    return Vocabulary.from_dict(obj.get("vocabulary"))


def save_kge(path: str | Path, model: MultimodalKGE, meta: dict | None = None, *,
             vocabulary: Vocabulary, negative_sampler: NegativeSampler | None = None) -> None:
    """Write ``model`` with the vocabulary of the graph it was trained on (and the state of
    its ``negative_sampler``, when that keeps any)."""
    cfg = model.config
    if (vocabulary.entities, vocabulary.relations) != (cfg.num_entities, cfg.num_relations):
        raise ValueError(f"{path}: the model has {cfg.num_entities} entities and "
                         f"{cfg.num_relations} relations but the vocabulary is "
                         f"{vocabulary.describe()}")
    extra = {}
    state = negative_sampler.state_dict() if negative_sampler is not None else {}
    if state:
        extra["negative_sampler"] = {
            "name": negative_sampler.name,
            "options": dataclasses.asdict(negative_sampler.options),
            "state": {k: v.detach().cpu() for k, v in state.items()}}
    save_checkpoint(path, "kge", model, cfg.to_dict(), meta, vocabulary=vocabulary,
                    extra=extra)


def restore_negative_sampler(path: str | Path, sampler: NegativeSampler) -> bool:
    """Load into ``sampler`` the state the KGE checkpoint at ``path`` saved for a sampler of
    the same name and options; returns whether there was one."""
    saved = read_checkpoint(path, "kge").get("negative_sampler")
    if (not saved or saved["name"] != sampler.name
            or saved["options"] != dataclasses.asdict(sampler.options)):
        return False
    sampler.load_state_dict(saved["state"])
    return True


def load_kge(path: str | Path, device: torch.device | str = "cpu",
             vocabulary: Vocabulary | None = None, graph_source: str | Path = "the dataset"
             ) -> tuple[MultimodalKGE, dict[str, Any]]:
    """Rebuild a KGE from its checkpoint; returns ``(model in eval mode, meta)``.

    Pass the ``vocabulary`` of the graph the model will score (and where that graph came
    from, for the message) wherever there is one: see :func:`read_checkpoint`.
    """
    obj = read_checkpoint(path, "kge", vocabulary, graph_source)
    model = MultimodalKGE(KGEModelConfig(**obj["config"]))
    model.load_state_dict(obj["state_dict"])
    return model.to(device).eval(), obj["meta"]


def save_diffusion(path: str | Path, diffusion: nn.Module, meta: dict | None = None, *,
                   vocabulary: Vocabulary) -> None:
    """Write a diffusion model with the vocabulary of the KGE it was trained on."""
    save_checkpoint(path, "diffusion", diffusion, dict(diffusion.hparams), meta,
                    vocabulary=vocabulary)


def load_diffusion(path: str | Path, device: torch.device | str = "cpu",
                   vocabulary: Vocabulary | None = None, graph_source: str | Path = "the dataset"):
    """Rebuild a :class:`DiffusionModel`; returns ``(model in eval mode, meta)``.

    ``vocabulary`` and ``graph_source`` as for :func:`load_kge`.
    """
    from dhns.diffusion.model import DiffusionModel

    obj = read_checkpoint(path, "diffusion", vocabulary, graph_source)
    diffusion = DiffusionModel(**obj["config"])
    diffusion.load_state_dict(obj["state_dict"])
    return diffusion.to(device).eval(), obj["meta"]
