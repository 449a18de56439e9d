"""Build a KGE from params, a KG and its feature tables."""

from __future__ import annotations

import logging
import os
import shutil

import torch

from dhns.config import KGEConfig
from dhns.data.kg import KnowledgeGraph
from dhns.errors import UserError
from dhns.features.table import FeatureTable
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE

KNOWN_MODALITIES = (STRUCTURE, "text", "image")


def build_kge(cfg: KGEConfig, kg: KnowledgeGraph, features: dict[str, FeatureTable],
              generator: torch.Generator) -> tuple[MultimodalKGE, list[str]]:
    """Returns the model and notes on modalities left out (disabled or with no data)."""
    notes = []
    modalities = [STRUCTURE]
    tables = {}
    for name in cfg.modalities:
        if name not in KNOWN_MODALITIES:
            raise UserError(f"kge.modalities: unknown modality {name!r}; "
                            f"choose from {list(KNOWN_MODALITIES)}")
        if name == STRUCTURE:
            continue
        table = features.get(name)
        if table is None or not table.enabled:
            notes.append(f"{name}: no features, modality left out")
            continue
        if table.num_entities != kg.num_entities:
            raise UserError(f"{name} features have {table.num_entities} rows, the KG has "
                            f"{kg.num_entities} entities")
        modalities.append(name)
        tables[name] = (table.features, table.mask)
    config = KGEModelConfig(
        model=cfg.model, dim=cfg.dim, gamma=cfg.gamma, num_entities=kg.num_entities,
        num_relations=kg.num_relations, modalities=modalities,
        feature_dims={name: t.shape[1] for name, (t, _) in tables.items()},
        reciprocal=cfg.reciprocal,
    )
    return MultimodalKGE(config, tables, generator), notes


def compile_scoring(model: MultimodalKGE, enabled: bool, device: torch.device) -> str:
    """Switch the model's all-pairs scoring to fused ``torch.compile`` kernels when
    ``enabled`` and possible; returns a line saying what was done.

    On CPU, inductor builds C++ kernels, so a compiler must exist; without one this falls back
    to eager scoring instead of failing on first use.
    """
    if not enabled:
        return "eager scoring (kge.compile is false)"
    if device.type == "cpu":
        if not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++")):
            return "warning: no C++ compiler found, so torch.compile is off: eager scoring"
        # inductor imports cpp_extension, which warns on every CPU-only machine that it found no
        # CUDA runtime: true and irrelevant here.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    if not model.scorer.fuse():
        return f"{model.scorer.name}: all-pairs scoring is a batched matrix product (no fusion)"
    return f"{model.scorer.name}: fused all-pairs scoring (torch.compile)"
