"""DVCLive progress logs: one row per epoch, validation only where evaluated, resumable."""

from __future__ import annotations

import json
from pathlib import Path

from dhns.training.live import LiveLog


def rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def test_epochs_validation_summary_and_resume(tmp_path: Path) -> None:
    log = LiveLog("pretrain", root=tmp_path)
    for epoch in range(1, 5):
        log({"epoch": epoch, "loss": 1.0 / epoch, "seconds": 0.1,
             **({"valid_mrr": 0.1 * epoch} if epoch % 2 == 0 else {})})
    log.end({"best_epoch": 4, "best_valid_mrr": 0.4, "start": float("nan")})
    folder = tmp_path / "pretrain"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["best_epoch"] == 4 and "start" not in metrics
    assert [r[0] for r in rows(folder / "plots/metrics/loss.tsv")] == ["1", "2", "3", "4"]
    assert [r[0] for r in rows(folder / "plots/metrics/valid_mrr.tsv")] == ["2", "4"]
    assert not (folder / "plots/metrics/seconds.tsv").exists()
    # A resumed run (its first record is a later epoch) appends ...
    resumed = LiveLog("pretrain", root=tmp_path)
    resumed({"epoch": 5, "loss": 0.1})
    resumed.end({})
    assert [r[0] for r in rows(folder / "plots/metrics/loss.tsv")] == ["1", "2", "3", "4", "5"]
    # ... and a run that starts at epoch 1 starts the log anew.
    fresh = LiveLog("pretrain", root=tmp_path)
    fresh({"epoch": 1, "loss": 2.0})
    fresh.end({})
    assert rows(folder / "plots/metrics/loss.tsv") == [["1", "2.0"]]
