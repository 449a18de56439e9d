"""Stage ``uniform``: the equal-budget baseline.

Continues the pretrained checkpoint for ``retrain.epochs`` with ordinary negatives only, the
same optimiser settings as the DHNS retrain: the honest ablation DHNS must beat.
"""

from __future__ import annotations

import sys

from dhns.config import Params
from stages.common import METRICS, PLOTS, REPORTS, UNIFORM_CKPT, check_outputs, run_stage
from stages.continued import continue_training


def run(params: Params) -> dict:
    check_outputs(UNIFORM_CKPT.parent, METRICS, REPORTS, PLOTS)
    return continue_training(params, "uniform", UNIFORM_CKPT, extra_loss=None, resumable=True)


if __name__ == "__main__":
    run_stage(run, report="uniform", argv=sys.argv[1:])
