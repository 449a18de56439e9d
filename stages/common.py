"""Pipeline plumbing shared by the stages: artifact paths, params, error handling.

Paths live here and only here; the library (``dhns``) never knows where the pipeline keeps
its files.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dhns.config import ConfigError, Params, load_params
from dhns.data.errors import DataError
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.filter import FilterIndex
from dhns.features.table import FeatureTable
from dhns.io import atomic_write_json
from dhns.training.checkpoint import CheckpointError

ARTIFACTS = Path("artifacts")
PREPARED = ARTIFACTS / "prepared"
TEXT_FEATURES = ARTIFACTS / "features" / "text.pt"
IMAGE_FEATURES = ARTIFACTS / "features" / "image.pt"
PRETRAIN_CKPT = ARTIFACTS / "pretrain" / "model.pt"
SAMPLER_CKPT = ARTIFACTS / "diffusion" / "sampler.pt"
UNIFORM_CKPT = ARTIFACTS / "uniform" / "model.pt"
DHNS_CKPT = ARTIFACTS / "retrain" / "model.pt"
METRICS = Path("metrics")
PLOTS = Path("plots")

# Errors a user can cause (bad params, bad data, wrong file): one line, no traceback.
USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError)


def run_stage(fn: Callable[[Params], object], metrics: str | None = None,
              params_path: str = "params.yaml") -> None:
    """Entry point of ``python -m stages.X``: load params, run, report user errors briefly.

    With ``metrics``, the stage's ``metrics/<metrics>.json`` also gets its wall time and peak
    resident memory (``resources``), the cost figures the benchmark tables quote.
    """
    start = time.perf_counter()
    try:
        fn(load_params(params_path))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if metrics is not None:
        record_resources(METRICS / f"{metrics}.json", time.perf_counter() - start)


def record_resources(path: Path, wall_seconds: float) -> None:
    """Add ``{"resources": {"wall_seconds", "peak_rss_mb"}}`` to the metrics JSON ``path``."""
    if not path.exists():
        return
    report = json.loads(path.read_text())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    report["resources"] = {"wall_seconds": round(wall_seconds, 1),
                           "peak_rss_mb": round(peak_kb / 1024, 1)}
    atomic_write_json(path, report)
    log(f"{path.stem}: {wall_seconds:.1f} s wall, peak RSS {peak_kb / 1024:.0f} MiB")


def generator(params: Params, offset: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``params.seed``; each stage uses its own offset."""
    return torch.Generator().manual_seed(params.seed * 1000 + offset)


def load_prepared() -> KnowledgeGraph:
    if not (PREPARED / "triples.pt").exists():
        raise FileNotFoundError(f"{PREPARED}: not prepared yet (run `dhns prepare`)")
    return KnowledgeGraph.load(PREPARED)


def load_features(params: Params) -> dict[str, FeatureTable]:
    tables = {}
    for name, path in (("text", TEXT_FEATURES), ("image", IMAGE_FEATURES)):
        if name in params.kge.modalities and path.exists():
            tables[name] = FeatureTable.load(path)
    return tables


def filter_index(kg: KnowledgeGraph) -> FilterIndex:
    return FilterIndex(kg.all_triples(), kg.num_relations)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
