"""Continue training the pretrained KGE (shared by the ``uniform`` and ``retrain`` stages)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dhns.config import Params, continuation_kge, to_dict
from dhns.device import resolve_device
from dhns.distributed import is_main_process
from dhns.kge.build import compile_scoring
from dhns.samplers import NegativeSampler
from dhns.training.checkpoint import load_kge, restore_negative_sampler, save_kge
from dhns.training.kgc import kgc_loss, negative_sampler, sparse_updates, with_extra_loss
from dhns.training.live import LiveLog
from dhns.training.pretrain import selection_validator
from dhns.training.trainer import LossFn, Trainer
from stages.common import (
    DIFFUSION_CKPT,
    METRICS,
    PLOTS,
    PREPARED,
    PRETRAIN_CKPT,
    REPORTS,
    generator,
    log,
)
from stages.inputs import load_prepared
from stages.reporting import write_history
from stages.resuming import resume_file

#: Generator offset of the fresh weights of ``retrain.start: scratch`` (shared by both arms, so
#: uniform and DHNS start from the same initialisation).
SCRATCH_INIT_OFFSET = 8

#: Builds the ordinary loss term from the training generator and the negative sampler
#: (None for the cross-entropy regimes; default: ``kgc_loss``).
BaseLoss = Callable[[torch.Generator, NegativeSampler | None], LossFn]


def continue_training(params: Params, name: str, out: Path, extra_loss: LossFn | None,
                      base_loss: BaseLoss | None = None, resumable: bool = False,
                      stateful: dict[str, Any] | None = None) -> dict:
    """Continue the pretrained checkpoint for ``retrain.epochs``; the starting weights take part
    in model selection, so the result is never worse than pretrain on validation.

    ``extra_loss`` is added to the ordinary self-adversarial loss (NTAT's L_HA for DHNS).
    ``base_loss`` replaces that ordinary loss (mined negatives beside the uniform ones). All
    runs draw ordinary negatives from the same seed, so they differ only in what is added.
    ``resumable``: keep a resume state; the training generator and the negative sampler are
    part of it, and so is every ``stateful`` object (``state_dict``/``load_state_dict``: the
    NTAT term), so the loss must hold no other state.
    """
    kg = load_prepared()
    device = resolve_device(params.device)
    model, _ = load_kge(PRETRAIN_CKPT, device, kg.vocabulary(), PREPARED)
    cfg = params.retrain
    if cfg.start == "scratch":
        model = model.reinitialised(generator(params, offset=SCRATCH_INIT_OFFSET))
        log(f"{name}: retrain.start scratch: the pretrained architecture, freshly initialised")
    log(compile_scoring(model, params.kge.compile, device))
    gen = generator(params, offset=3)
    kge = continuation_kge(params)
    sampler = negative_sampler(kge, kg)
    if sampler is not None and restore_negative_sampler(PRETRAIN_CKPT, sampler):
        log(f"{name}: negative sampler {sampler.name} continues from pretrain's saved state")
    base = (kgc_loss(kge, kg, gen, sampler=sampler) if base_loss is None
            else base_loss(gen, sampler))
    loss_fn = base if extra_loss is None else with_extra_loss(base, extra_loss)

    validate = selection_validator(params, kg)
    origin = "a fresh initialisation" if cfg.start == "scratch" else "the pretrained checkpoint"
    log(f"{name}: training from {origin} for {cfg.epochs} epochs")
    live = LiveLog(name)
    trainer = Trainer(model, kg.train, loss_fn, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      lr=cfg.lr, generator=gen, validate=validate, eval_every=cfg.eval_every,
                      patience=0, log=log, progress=sys.stderr.isatty(), desc=name,
                      on_epoch_end=live,
                      validate_start=True, lr_schedule=cfg.lr_schedule,
                      warmup_epochs=cfg.warmup_epochs,
                      resume=resume_file(params, name, [PREPARED, PRETRAIN_CKPT] + (
                          [DIFFUSION_CKPT] if name == "retrain" and DIFFUSION_CKPT.exists()
                          else []))
                      if resumable else None,
                      checkpoint_every=params.resume.checkpoint_every,
                      stateful={**({} if sampler is None else {"negative_sampler": sampler}),
                                **(stateful or {})},
                      sparse_updates=sparse_updates(kge, kg.num_entities))
    result = trainer.fit()
    live.end({"best_epoch": result.best_epoch, "best_valid_mrr": result.best_valid_mrr,
              "start_valid_mrr": result.start_valid_mrr})
    if not is_main_process():  # ranks > 0 of a distributed run hold the same model: rank 0 writes
        return {}
    save_kge(out, model, meta={"dataset": kg.name, "stage": name, "params": to_dict(params),
                               "best_epoch": result.best_epoch, "history": result.history},
             vocabulary=kg.vocabulary(), negative_sampler=sampler)
    return write_history(name, result, METRICS, REPORTS, PLOTS,
                         extra={"start_valid_mrr": round(result.start_valid_mrr, 6)})
