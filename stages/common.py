"""Pipeline plumbing shared by the stages: artifact paths, params, error handling, logging.

Paths live here and only here; the library (``dhns``) never knows where the pipeline keeps
its files. Kept light (no model code): every stage imports it, so every file it imports is a
DVC dependency of every stage. Loading the prepared graph is in :mod:`stages.inputs`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from dhns.config import Params, load_stage_params
from dhns.device import resolve_device, set_deterministic
from dhns.distributed import init_from_environment, is_main_process, rank_and_world
from dhns.errors import (
    STOPPED_EXIT,
    USER_ERRORS,
    DistributedError,
    TrainingStopped,
    error_message,
)
from dhns.io import atomic_write_json, check_writable
from dhns.seeding import seeded

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

def run_stage(fn: Callable[[Params], object], metrics: str | None = None,
              params_path: str = "params.yaml", argv: Sequence[str] = ()) -> None:
    """Entry point of ``python -m stages.X [--params FILE] [-S KEY=VALUE]...`` (``argv``, the
    options ``dhns X`` passes on; ``--params`` there wins over ``params_path``): load params,
    run, report user errors briefly: one ``error:`` line (an OSError as ``<path>: <reason>``)
    and exit status 1.

    With ``metrics``, the stage's ``metrics/<metrics>.json`` also gets its wall time and peak
    resident memory (``resources``), the cost figures the benchmark tables quote.
    """
    start = time.perf_counter()
    try:
        params = load_stage_params(["--params", params_path, *argv])
        set_deterministic(params.deterministic)
        init_from_environment(resolve_device(params.device))  # under torchrun: join the group
        fn(params)
        if metrics is not None and is_main_process():
            record_resources(METRICS / f"{metrics}.json", time.perf_counter() - start)
    except USER_ERRORS as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        raise SystemExit(1) from None
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except TrainingStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        raise SystemExit(STOPPED_EXIT) from None


def check_outputs(*folders: Path) -> None:
    """First call of every stage: the folders it writes into can be written, so a read-only
    or misplaced folder fails in a second, not after the training. Raises OSError."""
    for folder in folders:
        check_writable(folder)


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
    """A CPU generator seeded from ``params.seed``; each stage uses its own offset (and each
    rank of a distributed run its own stream)."""
    return seeded(params.seed, offset, rank_and_world()[0])



def log(message: str) -> None:
    if is_main_process():  # one log per run, not one per rank
        print(message, file=sys.stderr, flush=True)
