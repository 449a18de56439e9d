"""Stage ``pretrain``: the multimodal KGE trained with ordinary negatives."""

from __future__ import annotations

import sys

from dhns.config import Params, to_dict
from dhns.device import resolve_device
from dhns.kge.build import build_kge, compile_scoring
from dhns.training.checkpoint import save_kge
from dhns.training.kgc import kgc_loss, validator
from dhns.training.trainer import Trainer
from stages.common import METRICS, PLOTS, PRETRAIN_CKPT, check_outputs, generator, log, run_stage
from stages.inputs import filter_index, load_features, load_prepared
from stages.reporting import write_history


def run(params: Params) -> dict:
    check_outputs(PRETRAIN_CKPT.parent, METRICS, PLOTS)
    kg = load_prepared()
    device = resolve_device(params.device)
    gen = generator(params, offset=1)
    model, notes = build_kge(params.kge, kg, load_features(params, kg), gen)
    for note in notes:
        log(f"note: {note}")
    log(f"pretrain {params.kge.model} on {kg.name}: modalities {model.modalities}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, device {device}")
    model.to(device)
    log(compile_scoring(model, params.kge.compile, device))
    cfg = params.pretrain
    log(f"pretrain: loss {params.kge.loss}"
        f"{', reciprocal relations' if params.kge.reciprocal else ''}"
        f"{f', N3 {params.kge.n3}' if params.kge.n3 else ''}, lr {cfg.lr} ({cfg.lr_schedule}"
        f"{f', {cfg.warmup_epochs} warm-up epochs' if cfg.warmup_epochs else ''})")
    trainer = Trainer(
        model, kg.train, kgc_loss(params.kge, kg, gen),
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, generator=gen,
        lr_schedule=cfg.lr_schedule, warmup_epochs=cfg.warmup_epochs,
        validate=validator(kg.valid, filter_index(kg), kg.num_entities, cfg.max_valid,
                           params.eval.batch_size, generator(params, offset=99)),
        eval_every=cfg.eval_every, patience=cfg.patience, log=log,
        progress=sys.stderr.isatty(), desc="pretrain",
    )
    result = trainer.fit()
    save_kge(PRETRAIN_CKPT, model, meta={
        "dataset": kg.name, "stage": "pretrain", "params": to_dict(params),
        "best_epoch": result.best_epoch, "history": result.history},
        vocabulary=kg.vocabulary())
    return write_history("pretrain", result, METRICS, PLOTS)


if __name__ == "__main__":
    run_stage(run, metrics="pretrain")
