"""Stage ``prepare``: read and validate the configured dataset, write ``artifacts/prepared``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from dhns.config import Params
from dhns.data import load_dataset
from dhns.data.validate import top_up_valid
from stages.common import METRICS, PREPARED, REPORTS, check_outputs, log, run_stage, write_record


def run(params: Params) -> dict:
    check_outputs(PREPARED, METRICS, REPORTS)
    source = Path(params.data.dir) / params.data.name
    if not source.is_dir():
        raise FileNotFoundError(
            f"{source}: dataset not found; bring it in with `dhns data import "
            f"{params.data.name} --from DIR` or `dhns data download {params.data.name}`")
    kg, warnings = load_dataset(source, params.data.name, clean_valid=params.data.clean_valid)
    # A fixed seed, not params.seed: seeds vary training, never the data split.
    train, valid, msg = top_up_valid(kg.train, kg.valid, params.data.min_valid,
                                     torch.Generator().manual_seed(0))
    if msg:
        kg = dataclasses.replace(kg, train=train, valid=valid)
        warnings.append(msg)
    for warning in warnings:
        log(f"warning: {warning}")
    kg.save(PREPARED)
    report = {**kg.summary(), "warnings": warnings}
    write_record("prepare", report)
    log(f"prepared {kg.name}: {kg.num_entities} entities, {kg.num_relations} relations, "
        f"{len(kg.train)}/{len(kg.valid)}/{len(kg.test)} train/valid/test")
    return report


if __name__ == "__main__":
    run_stage(run, report="prepare", argv=sys.argv[1:])
