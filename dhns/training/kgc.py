"""Ordinary KGC training pieces: the uniform-negative loss term and the validation callback."""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.loss import kge_loss
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeSampler
from dhns.training.trainer import LossFn, Validate


def uniform_loss(sampler: NegativeSampler, temperature: float,
                 generator: torch.Generator) -> LossFn:
    """Self-adversarial loss with ordinary (uniform or Bernoulli) negatives."""

    def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
        return kge_loss(model, batch, sampler.sample(batch, generator), temperature), {}

    return loss_fn


def with_extra_loss(base: LossFn, extra: LossFn) -> LossFn:
    """``base + extra`` for one step, their stats merged (NTAT's ``lambda L_HA`` on top of the
    ordinary loss)."""

    def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
        loss, stats = base(model, batch, step)
        extra_loss, extra_stats = extra(model, batch, step)
        return loss + extra_loss, {**stats, **extra_stats}

    return loss_fn


def validator(valid: Tensor, filter_index: FilterIndex, num_entities: int,
              max_triples: int, batch_size: int, generator: torch.Generator) -> Validate:
    """Filtered realistic MRR on a fixed random subset of ``valid`` (both sides)."""
    if max_triples and len(valid) > max_triples:
        pick = torch.randperm(len(valid), generator=generator)[:max_triples]
        valid = valid[pick.sort().values]

    def validate(model: MultimodalKGE) -> float:
        result = evaluate(model.link_predictor(), valid, filter_index, num_entities,
                          batch_size=batch_size, progress=False)
        return float(result["mrr"])

    return validate
