"""Stage ``figures``: the PNG figures of the run (DVC image plots), from the plot CSVs."""

from __future__ import annotations

import json
import sys

from dhns.config import Params
from dhns.figures import (
    projection_figure,
    read_rows,
    save_png,
    scores_figure,
    training_figure,
)
from stages.common import METRICS, PLOTS, check_outputs, log, run_stage

FIGURES = PLOTS / "figures"


def run(params: Params) -> list[str]:
    check_outputs(FIGURES)
    histories = {name: read_rows(PLOTS / f"{csv}.csv")
                 for name, csv in (("pretrain", "pretrain"), ("uniform", "uniform"),
                                   ("dhns", "retrain"))}
    start = json.loads((METRICS / "pretrain.json").read_text())["best_epoch"]
    written = []
    for name, fig in (("training", training_figure(histories, start)),
                      ("scores", scores_figure(read_rows(PLOTS / "diffusion_scores.csv"))),
                      ("projection",
                       projection_figure(read_rows(PLOTS / "diffusion_projection.csv")))):
        path = FIGURES / f"{name}.png"
        save_png(fig, path)
        written.append(str(path))
    log(f"figures: wrote {', '.join(written)}")
    return written


if __name__ == "__main__":
    run_stage(run, argv=sys.argv[1:])
