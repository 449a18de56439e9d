"""Stage ``synthetic``: generate the embedded default dataset into ``<data.dir>/synthetic``."""

from __future__ import annotations

import sys
from pathlib import Path

from dhns.config import Params
from dhns.data import generate_synthetic
from stages.common import check_outputs, log, run_stage


def run(params: Params) -> Path:
    check_outputs(Path(params.data.dir))
    out = Path(params.data.dir) / "synthetic"
    generate_synthetic(params.data.synthetic, out)
    log(f"generated the synthetic dataset in {out}")
    return out


if __name__ == "__main__":
    run_stage(run, argv=sys.argv[1:])
