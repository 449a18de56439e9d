"""Pretraining a KGE from params: what the ``pretrain`` stage and ``dhns tune`` both run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from dhns.config import Params
from dhns.data.kg import KnowledgeGraph
from dhns.device import resolve_device
from dhns.distributed import rank_and_world
from dhns.evaluation.filter import FilterIndex
from dhns.features.table import FeatureTable
from dhns.kge.build import build_kge, compile_scoring
from dhns.kge.model import MultimodalKGE
from dhns.samplers import NegativeSampler
from dhns.seeding import seeded
from dhns.training.kgc import (
    kgc_loss,
    negative_sampler,
    selection_subset,
    sparse_updates,
    validator,
)
from dhns.training.resume import ResumeFile
from dhns.training.trainer import Trainer, TrainResult, Validate

#: Offsets of the generators pretraining derives from ``params.seed``
#: (:func:`dhns.seeding.seeded`); the continuation stages validate with the same subset.
TRAIN_OFFSET, VALID_OFFSET = 1, 99


def selection_validator(params: Params, kg: KnowledgeGraph) -> Validate:
    """Filtered MRR on the fixed validation subset every training stage selects its epoch on
    (``pretrain.max_valid`` triples, drawn from ``params.seed``)."""
    return validator(kg.valid, FilterIndex(kg.all_triples(), kg.num_relations),
                     kg.num_entities, params.pretrain.max_valid, params.eval.batch_size,
                     seeded(params.seed, VALID_OFFSET))


def selection_indices(params: Params, num_valid: int) -> Tensor:
    """Indices of that subset among ``num_valid`` validation triples (the same draw)."""
    return selection_subset(num_valid, params.pretrain.max_valid,
                            seeded(params.seed, VALID_OFFSET))


@dataclass
class Pretrained:
    model: MultimodalKGE
    result: TrainResult
    negative_sampler: NegativeSampler | None = None  # the ns regime's, with its final state


def pretrain_kge(params: Params, kg: KnowledgeGraph, features: dict[str, FeatureTable],
                 log: Callable[[str], None] = print, progress: bool = False,
                 on_epoch_end: Callable[[dict], None] | None = None,
                 resume: ResumeFile | None = None, checkpoint_every: int = 0) -> Pretrained:
    """Build the KGE ``params.kge`` describes and train it for ``params.pretrain`` on
    ``kg.train``, selecting the epoch by filtered MRR on a fixed subset of ``kg.valid``.

    ``on_epoch_end`` gets each epoch's record (``valid_mrr`` on evaluation epochs) and may
    raise to stop the run (a pruned search trial). ``resume`` and ``checkpoint_every``: see
    :class:`~dhns.training.trainer.Trainer`.
    """
    device = resolve_device(params.device)
    gen = seeded(params.seed, TRAIN_OFFSET, rank_and_world()[0])
    model, notes = build_kge(params.kge, kg, features, gen)
    for note in notes:
        log(f"note: {note}")
    log(f"pretrain {params.kge.model} on {kg.name}: modalities {model.modalities}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, device {device}")
    model.to(device)
    log(compile_scoring(model, params.kge.compile, device))
    cfg, kge = params.pretrain, params.kge
    log(f"pretrain: loss {kge.loss}{', reciprocal relations' if kge.reciprocal else ''}"
        f"{f', N3 {kge.n3}' if kge.n3 else ''}, lr {cfg.lr} ({cfg.lr_schedule}"
        f"{f', {cfg.warmup_epochs} warm-up epochs' if cfg.warmup_epochs else ''})")
    sampler = negative_sampler(kge, kg)
    if sampler is not None and sampler.name != "uniform":
        log(f"pretrain: negative sampler {sampler.name} ({sampler.cost})")
    trainer = Trainer(
        model, kg.train, kgc_loss(kge, kg, gen, sampler=sampler), epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, generator=gen,
        validate=selection_validator(params, kg), eval_every=cfg.eval_every,
        patience=cfg.patience, log=log, progress=progress, desc="pretrain",
        on_epoch_end=on_epoch_end, lr_schedule=cfg.lr_schedule, warmup_epochs=cfg.warmup_epochs,
        resume=resume, checkpoint_every=checkpoint_every,
        stateful={} if sampler is None else {"negative_sampler": sampler},
        sparse_updates=sparse_updates(kge, kg.num_entities))
    return Pretrained(model, trainer.fit(), sampler)
