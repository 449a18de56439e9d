"""Stages ``text_features`` and ``image_features``: one feature table per modality."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from dhns.config import Params
from dhns.device import resolve_device
from dhns.features.table import FeatureTable
from stages.common import (
    IMAGE_FEATURES,
    METRICS,
    PREPARED,
    REPORTS,
    TEXT_FEATURES,
    check_outputs,
    log,
    run_stage,
    write_record,
)
from stages.inputs import load_prepared


def _finish(name: str, table: FeatureTable, path: Path) -> dict:
    table.save(path)
    report = {k: v for k, v in table.meta.items() if isinstance(v, (int, float, str, bool))}
    report["with_modality"] = int(table.mask.sum())
    report["entities"] = table.num_entities
    if table.meta.get("skipped_by_reason"):
        report["skipped_by_reason"] = dict(table.meta["skipped_by_reason"])
    write_record(f"{name}_features", report)
    log(f"{name} features: {table.num_entities} x {table.dim}, "
        f"{report['with_modality']} entities have {name}"
        + (f" ({table.meta['reason']})" if table.meta.get("reason") else ""))
    if name == "image" and table.meta.get("skipped_images"):
        from dhns.features.image import skipped_summary
        log(skipped_summary(table.meta))
    return report


def _run(params: Params, name: str, path: Path) -> dict:
    check_outputs(path.parent, METRICS, REPORTS)
    cfg = getattr(params.features, name)
    kg = load_prepared()
    vocabulary = kg.vocabulary()
    if cfg.precomputed:
        from dhns.features.precomputed import load_precomputed
        table = load_precomputed(cfg.precomputed, kg.num_entities, vocabulary, PREPARED)
    elif not cfg.enabled:
        table = FeatureTable.empty(kg.num_entities, f"features.{name}.enabled is false")
    elif name == "image" and not any(kg.image_dirs):
        table = FeatureTable.empty(kg.num_entities, f"{kg.name} has no images")
    else:
        from dhns.features import extract_image_features, extract_text_features
        extract = extract_text_features if name == "text" else extract_image_features
        table = extract(kg, cfg, resolve_device(params.device), progress=sys.stderr.isatty())
    # Rows follow kg's entity ids: record which, so pretrain refuses the table on another graph.
    return _finish(name, dataclasses.replace(table, vocabulary=vocabulary), path)


def run_text(params: Params) -> dict:
    return _run(params, "text", TEXT_FEATURES)


def run_image(params: Params) -> dict:
    return _run(params, "image", IMAGE_FEATURES)


if __name__ == "__main__":
    kind = sys.argv[1]
    run_stage({"text": run_text, "image": run_image}[kind], report=f"{kind}_features",
              argv=sys.argv[2:])
