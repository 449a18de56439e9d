"""Per-epoch progress through DVCLive, DVC's own logger.

A training stage passes a :class:`LiveLog` as the trainer's ``on_epoch_end``: every epoch it
writes ``dvclive/<stage>/metrics.json`` (the latest loss and validation MRR, the epoch as
``step``) and appends to ``dvclive/<stage>/plots/metrics/*.tsv``, which ``dvc.yaml`` declares,
so ``dvc exp show`` and ``dvc plots`` follow a queued or running experiment while it trains.
Only the main process of a distributed run logs. The stage's final files (``metrics/<stage>
.json``, ``plots/<stage>.csv``) are written from the same records when training ends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dhns.distributed import is_main_process

ROOT = Path("dvclive")
LOGGED = ("loss", "valid_mrr")


class LiveLog:
    """``on_epoch_end`` callback logging ``loss`` and (when evaluated) ``valid_mrr``.

    A run's first record decides between a fresh log and a continued one: epoch 1 starts the
    log anew, a later epoch (a resumed run) appends to what the killed run logged.
    """

    def __init__(self, stage: str, root: Path = ROOT) -> None:
        self.directory = root / stage
        self.live: Any = None

    def __call__(self, record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        if self.live is None:
            # Imported on first use: dvclive pulls in dvc, seconds that a run without
            # epochs (or a test) should not pay.
            from dvclive import Live

            self.live = Live(dir=str(self.directory), resume=record["epoch"] > 1,
                             save_dvc_exp=False, dvcyaml=None, report=None)
        self.live.step = int(record["epoch"])
        for key in LOGGED:
            value = record.get(key)
            if value is not None and math.isfinite(value):
                self.live.log_metric(key, float(value))
        self.live.next_step()

    def end(self, summary: dict[str, Any]) -> None:
        """Add the run's ``summary`` (e.g. best epoch and MRR) to its metrics and close it."""
        if self.live is None:
            return
        self.live.summary.update({k: v for k, v in summary.items()
                                  if not (isinstance(v, float) and not math.isfinite(v))})
        self.live.end()
