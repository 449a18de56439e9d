"""Diffusion training pairs ``(x0, c)`` built from a KGE (docs/method.md, section 3).

The diffusion model sees one "stream" per (modality, direction): ``"text:tail"`` generates
tails from text embeddings conditioned on ``C(e_text(h), r)``; ``"text:head"`` generates heads
conditioned on ``C'(e_text(t), r)``. Streams get their own standardisation and modality
embedding, so head and tail chains are separate chains (the reference code mixes them).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from dhns.config import DiffusionConfig
from dhns.diffusion.model import DiffusionModel
from dhns.errors import UserError
from dhns.kge.model import MultimodalKGE

DIRECTIONS = ("tail", "head")


def diffusion_streams(model: MultimodalKGE, wanted: list[str]) -> list[str]:
    """Stream names ``"<modality>:<direction>"`` for the modalities the model has and the
    params ask for (``model.modalities``), in a fixed order."""
    unknown = [m for m in wanted if m not in ("structure", "text", "image")]
    if unknown:
        raise UserError(f"model.modalities: unknown modality {unknown[0]!r}")
    mods = [m for m in model.modalities if m in wanted]
    if not mods:
        raise UserError(f"model.modalities {wanted} shares nothing with the KGE's "
                        f"modalities {model.modalities}")
    return [f"{m}:{d}" for m in mods for d in DIRECTIONS]


def diffusion_pairs(model: MultimodalKGE, triples: Tensor, streams: list[str],
                    detach: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Targets ``x0`` (n, D), conditions ``c`` (n, D) and stream index (n,) for ``triples``.

    Rows are kept only where the modality exists for both entities of the triple. Detached
    unless ``detach`` is false (joint training with ``retrain.diffusion_weight``).
    """
    with torch.no_grad() if detach else contextlib.nullcontext():
        emb, mask = model.modality_embeddings(torch.cat([triples[:, 0], triples[:, 2]]))
        b = len(triples)
        rel = model.relation[triples[:, 1]]
        xs, cs, idx = [], [], []
        for s, stream in enumerate(streams):
            modality, direction = stream.split(":")
            m = model.modalities.index(modality)
            head, tail = emb[m, :b], emb[m, b:]
            keep = mask[m, :b] & mask[m, b:]
            anchor, target = (head, tail) if direction == "tail" else (tail, head)
            xs.append(target[keep])
            cs.append(model.scorer.condition(anchor[keep], rel[keep], direction))
            idx.append(torch.full((int(keep.sum()),), s, dtype=torch.long, device=keep.device))
        return torch.cat(xs), torch.cat(cs), torch.cat(idx)


def new_diffusion_model(model: MultimodalKGE, cfg: DiffusionConfig,
                          generator: torch.Generator) -> DiffusionModel:
    """An untrained diffusion model over ``model``'s embeddings (width ``entity_width``) for the
    streams ``cfg.modalities`` asks for, on the model's device; weights drawn from ``generator``."""
    streams = diffusion_streams(model, cfg.modalities)
    return DiffusionModel(model.scorer.entity_width, streams, cfg.steps, cfg.schedule,
                            cfg.beta_start, cfg.beta_end, cfg.hidden_mult, generator
                            ).to(model.entity.device)
