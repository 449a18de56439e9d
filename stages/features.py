"""Stages ``text_features`` and ``image_features``: one feature table per modality."""

from __future__ import annotations

import sys
from pathlib import Path

from dhns.config import Params
from dhns.device import resolve_device
from dhns.features.table import FeatureTable
from dhns.io import atomic_write_json
from stages.common import IMAGE_FEATURES, METRICS, TEXT_FEATURES, load_prepared, log, run_stage


def _finish(name: str, table: FeatureTable, path: Path) -> dict:
    table.save(path)
    report = {k: v for k, v in table.meta.items() if isinstance(v, (int, float, str, bool))}
    report["with_modality"] = int(table.mask.sum())
    report["entities"] = table.num_entities
    atomic_write_json(METRICS / f"{name}_features.json", report)
    log(f"{name} features: {table.num_entities} x {table.dim}, "
        f"{report['with_modality']} entities have {name}"
        + (f" ({table.meta['reason']})" if table.meta.get("reason") else ""))
    return report


def run_text(params: Params) -> dict:
    cfg = params.features.text
    kg = load_prepared()
    if cfg.precomputed:
        from dhns.features.precomputed import load_precomputed
        table = load_precomputed(cfg.precomputed, kg.num_entities)
    elif not cfg.enabled:
        table = FeatureTable.empty(kg.num_entities, "features.text.enabled is false")
    else:
        from dhns.features.text import extract_text_features
        table = extract_text_features(kg, cfg, resolve_device(params.device),
                                      progress=sys.stderr.isatty())
    return _finish("text", table, TEXT_FEATURES)


def run_image(params: Params) -> dict:
    cfg = params.features.image
    kg = load_prepared()
    if cfg.precomputed:
        from dhns.features.precomputed import load_precomputed
        table = load_precomputed(cfg.precomputed, kg.num_entities)
    elif not cfg.enabled:
        table = FeatureTable.empty(kg.num_entities, "features.image.enabled is false")
    elif not any(kg.image_dirs):
        table = FeatureTable.empty(kg.num_entities, f"{kg.name} has no images")
    else:
        from dhns.features.image import extract_image_features
        table = extract_image_features(kg, cfg, resolve_device(params.device),
                                       progress=sys.stderr.isatty())
    return _finish("image", table, IMAGE_FEATURES)


if __name__ == "__main__":
    run_stage({"text": run_text, "image": run_image}[sys.argv[1]])
