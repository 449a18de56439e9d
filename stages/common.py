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
from dhns.records import METRICS_DIR, REPORTS_DIR, read_record, split_record
from dhns.seeding import seeded

ARTIFACTS = Path("artifacts")
PREPARED = ARTIFACTS / "prepared"
TEXT_FEATURES = ARTIFACTS / "features" / "text.pt"
IMAGE_FEATURES = ARTIFACTS / "features" / "image.pt"
PRETRAIN_CKPT = ARTIFACTS / "pretrain" / "model.pt"
DIFFUSION_CKPT = ARTIFACTS / "diffusion" / "model.pt"
UNIFORM_CKPT = ARTIFACTS / "uniform" / "model.pt"
DHNS_CKPT = ARTIFACTS / "retrain" / "model.pt"
METRICS = Path(METRICS_DIR)
REPORTS = Path(REPORTS_DIR)
PLOTS = Path("plots")

_TRAINING = ("epochs_run", "best_epoch", "best_valid_mrr", "final_loss", "start_valid_mrr")
#: Per stage, what its ``metrics/<stage>.json`` keeps (:func:`dhns.records.split_record`
#: keys): the figures people compare across runs. Everything else the stage records (wall
#: and per-epoch times, ``resources``, configuration echoes, per-epoch lists, per-side and
#: per-category detail) goes to ``reports/<stage>.json``, which is no DVC metric: ``dvc exp
#: show`` made a column of each of them, 245 on the default run. A key a stage does not
#: record is skipped, so ``retrain`` lists the figures of each of its variants.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": ("entities", "relations", "train", "valid", "test"),
    "text_features": ("dim", "with_modality"),
    "image_features": ("dim", "with_modality", "skipped_images"),
    "pretrain": _TRAINING,
    "uniform": _TRAINING,
    "retrain": _TRAINING + ("generated_coverage", "mined_coverage", "loss_gradients.*.share"),
    "diffusion": ("final_train_loss_ratio", "heldout_loss_ratio", "levels_ordered",
                  "levels_between_positive_and_uniform", "generated_rank.*.median_rank",
                  "nearest_known_answer"),
    "evaluate": ("*.mrr", "*.hits@1", "*.hits@3", "*.hits@10", "*.optimistic.mrr"),
}


def run_stage(fn: Callable[[Params], object], report: str | None = None,
              params_path: str = "params.yaml", argv: Sequence[str] = ()) -> None:
    """Entry point of ``python -m stages.X [--params FILE] [-S KEY=VALUE]...`` (``argv``, the
    options ``dhns X`` passes on; ``--params`` there wins over ``params_path``): load params,
    run, report user errors briefly: one ``error:`` line (an OSError as ``<path>: <reason>``)
    and exit status 1.

    With ``report``, the stage's ``reports/<report>.json`` also gets its wall time and peak
    resident memory (``resources``), the cost figures the benchmark tables quote.
    """
    start = time.perf_counter()
    try:
        params = load_stage_params(["--params", params_path, *argv])
        set_deterministic(params.deterministic)
        init_from_environment(resolve_device(params.device))  # under torchrun: join the group
        fn(params)
        if report is not None and is_main_process():
            record_resources(report, time.perf_counter() - start)
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


def write_record(stage: str, record: dict, metrics_dir: Path = METRICS,
                 reports_dir: Path = REPORTS) -> dict:
    """Write ``record`` split by :data:`METRIC_KEYS`: ``metrics_dir/<stage>.json`` and
    ``reports_dir/<stage>.json``, each atomically. Returns ``record``, whole.

    Here rather than in :mod:`stages.reporting`: the data stages write records too, and
    importing ``reporting`` would make the training code a DVC dependency of theirs."""
    metrics, report = split_record(record, METRIC_KEYS[stage])
    atomic_write_json(metrics_dir / f"{stage}.json", metrics)
    atomic_write_json(reports_dir / f"{stage}.json", report)
    return record


def stage_record(stage: str) -> dict:
    """The whole record ``stage`` wrote here (metrics and report merged; ``{}`` if none)."""
    return read_record(Path("."), stage)


def record_resources(stage: str, wall_seconds: float) -> None:
    """Add ``{"resources": {"wall_seconds", "peak_rss_mb"}}`` to ``reports/<stage>.json``."""
    path = REPORTS / f"{stage}.json"
    if not path.exists():
        return
    report = json.loads(path.read_text())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    report["resources"] = {"wall_seconds": round(wall_seconds, 1),
                           "peak_rss_mb": round(peak_kb / 1024, 1)}
    atomic_write_json(path, report)
    log(f"{stage}: {wall_seconds:.1f} s wall, peak RSS {peak_kb / 1024:.0f} MiB")


def generator(params: Params, offset: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``params.seed``; each stage uses its own offset (and each
    rank of a distributed run its own stream)."""
    return seeded(params.seed, offset, rank_and_world()[0])



def log(message: str) -> None:
    if is_main_process():  # one log per run, not one per rank
        print(message, file=sys.stderr, flush=True)
