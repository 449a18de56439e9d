"""Metrics JSON and per-epoch plot files of the training stages."""

from __future__ import annotations

from pathlib import Path

from dhns.io import atomic_write_json, atomic_write_text
from dhns.training.trainer import TrainResult


def write_history(name: str, result: TrainResult, metrics_dir: Path, plots_dir: Path,
                  extra: dict | None = None) -> dict:
    """``metrics/<name>.json`` (summary) and ``plots/<name>.csv`` (epoch, loss, valid_mrr)."""
    epochs = result.history
    summary = {
        "epochs_run": len(epochs),
        "best_epoch": result.best_epoch,
        "best_valid_mrr": round(result.best_valid_mrr, 6),
        "final_loss": round(epochs[-1]["loss"], 6) if epochs else None,
        "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds / max(1, len(epochs)), 2),
        "stopped_early": result.stopped_early,
        "skipped_steps": result.skipped_steps,
        **(extra or {}),
    }
    atomic_write_json(metrics_dir / f"{name}.json", summary)
    lines = ["epoch,loss,valid_mrr"]
    for record in epochs:
        mrr = record.get("valid_mrr")
        mrr_text = "" if mrr is None else f"{mrr:.6f}"
        lines.append(f"{record['epoch']},{record['loss']:.6f},{mrr_text}")
    atomic_write_text(plots_dir / f"{name}.csv", "\n".join(lines) + "\n")
    return summary
