"""Stage ``pretrain``: the multimodal KGE trained with the ``kge.loss`` regime."""

from __future__ import annotations

import sys

from dhns.config import Params, to_dict
from dhns.distributed import is_main_process
from dhns.training.checkpoint import save_kge
from dhns.training.live import LiveLog
from dhns.training.pretrain import pretrain_kge
from stages.common import (
    IMAGE_FEATURES,
    METRICS,
    PLOTS,
    PREPARED,
    PRETRAIN_CKPT,
    REPORTS,
    TEXT_FEATURES,
    check_outputs,
    log,
    run_stage,
)
from stages.inputs import load_features, load_prepared
from stages.reporting import write_history
from stages.resuming import resume_file


def run(params: Params) -> dict:
    check_outputs(PRETRAIN_CKPT.parent, METRICS, REPORTS, PLOTS)
    kg = load_prepared()
    features = load_features(params, kg)
    resume = resume_file(params, "pretrain", [PREPARED, TEXT_FEATURES, IMAGE_FEATURES])
    live = LiveLog("pretrain")
    done = pretrain_kge(params, kg, features, log=log, progress=sys.stderr.isatty(),
                        on_epoch_end=live, resume=resume,
                        checkpoint_every=params.resume.checkpoint_every)
    live.end({"best_epoch": done.result.best_epoch,
              "best_valid_mrr": done.result.best_valid_mrr})
    if not is_main_process():  # ranks > 0 of a distributed run hold the same model: rank 0 writes
        return {}
    save_kge(PRETRAIN_CKPT, done.model, meta={
        "dataset": kg.name, "stage": "pretrain", "params": to_dict(params),
        "best_epoch": done.result.best_epoch, "history": done.result.history},
        vocabulary=kg.vocabulary(), negative_sampler=done.negative_sampler)
    return write_history("pretrain", done.result, METRICS, REPORTS, PLOTS)


if __name__ == "__main__":
    run_stage(run, report="pretrain", argv=sys.argv[1:])
