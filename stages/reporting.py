"""Records (metrics and report JSON) and per-epoch plot files of the training stages."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from dhns.io import atomic_write_text
from dhns.training.trainer import TrainResult
from stages.common import write_record


def write_history(name: str, result: TrainResult, metrics_dir: Path, reports_dir: Path,
                  plots_dir: Path, extra: dict | None = None) -> dict:
    """The summary, split as :func:`stages.common.write_record` does (``metrics/<name>.json``
    and ``reports/<name>.json``), and ``plots/<name>.csv`` (epoch, loss, valid_mrr).

    A figure that was never measured (no validation ran) or is not finite (every step of the
    last epoch skipped) is ``null`` in the JSON and an empty cell in the CSV, never ``NaN``.
    """
    epochs = result.history
    summary = {
        "epochs_run": len(epochs),
        "best_epoch": result.best_epoch,
        "best_valid_mrr": _rounded(result.best_valid_mrr),
        "final_loss": _rounded(epochs[-1]["loss"]) if epochs else None,
        "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds / max(1, len(epochs)), 2),
        "stopped_early": result.stopped_early,
        "skipped_steps": result.skipped_steps,
        **(extra or {}),
    }
    write_record(name, summary, metrics_dir, reports_dir)
    lines = ["epoch,loss,valid_mrr"]
    for record in epochs:
        cells = (record["epoch"], _cell(record["loss"]), _cell(record.get("valid_mrr")))
        lines.append(",".join(map(str, cells)))
    atomic_write_text(plots_dir / f"{name}.csv", "\n".join(lines) + "\n")
    return summary


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Mapping]) -> None:
    """``rows`` (mappings holding every ``header`` key) as a CSV file with that header."""
    lines = [",".join(header)] + [",".join(str(row[k]) for k in header) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _cell(value: float | None) -> str:
    value = _rounded(value)
    return "" if value is None else f"{value:.6f}"
