"""Ordinary KGC training pieces: the loss of the ``kge.loss`` regime and the validation
callback."""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.config import KGEConfig
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.candidates import CandidateStore, GeneratedStore
from dhns.kge.cross_entropy import k_vs_all_loss, n3_penalty, one_vs_all_loss, shared_pool_loss
from dhns.kge.loss import kge_loss
from dhns.kge.model import MultimodalKGE
from dhns.samplers import NegativeSampler, SamplerContext, build_sampler, sampler_options
from dhns.training.trainer import LossFn, Validate

#: ``kge.sparse_updates: auto`` turns lazy row updates on from this many entities.
SPARSE_FROM_ENTITIES = 50_000


def sparse_updates(cfg: KGEConfig, num_entities: int) -> bool:
    """Whether a run with ``cfg`` updates only the entity rows each step touches
    (:class:`dhns.optim.RowAdam`). Never for 1vsall and kvsall, whose every step's gradient
    reaches every entity; ``auto``: from :data:`SPARSE_FROM_ENTITIES` entities."""
    if cfg.loss in ("1vsall", "kvsall"):
        return False
    if cfg.sparse_updates == "auto":
        return num_entities >= SPARSE_FROM_ENTITIES
    return bool(cfg.sparse_updates)


def negative_sampler(cfg: KGEConfig, kg: KnowledgeGraph) -> NegativeSampler | None:
    """The ``kge.negative_sampler`` of ``cfg`` with its ``kge.sampler_options``, for ``kg``;
    None for the cross-entropy regimes, which draw no negatives."""
    if cfg.loss != "ns":
        return None
    context = SamplerContext(kg.num_entities, kg.num_relations, kg.train)
    return build_sampler(cfg.negative_sampler, context, cfg.num_negatives,
                         sampler_options(cfg))


def kgc_loss(cfg: KGEConfig, kg: KnowledgeGraph, generator: torch.Generator,
             candidates: CandidateStore | None = None,
             sampler: NegativeSampler | None = None) -> LossFn:
    """The ordinary training loss ``kge.loss`` asks for, plus ``kge.n3`` times N3.

    ``ns`` is the self-adversarial loss over the negatives of ``sampler`` (default: built
    from ``cfg``; pass one to keep its state), with the per-triple ``candidates`` (mined real
    entities or generated embeddings) beside them when given. ``1vsall`` and ``shared`` take
    generated candidates (a :class:`GeneratedStore`) as extra wrong answers in each query's
    softmax; ``kvsall`` takes none. All draws come from ``generator``.
    """
    if cfg.loss == "ns":
        sampler = sampler or negative_sampler(cfg, kg)
        if candidates is None:
            base = sampled_loss(sampler, cfg.adversarial_temperature, generator)
        else:
            def base(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
                negatives = sampler.sample(batch, generator, model)
                return candidates.loss(model, batch, negatives, cfg.adversarial_temperature), {}
    else:
        if candidates is not None and (cfg.loss == "kvsall"
                                       or not isinstance(candidates, GeneratedStore)):
            raise ValueError(f"kge.loss {cfg.loss} takes no mined candidates (1vsall and shared "
                             "take generated ones)")
        base = cross_entropy_loss(cfg, kg, generator, candidates)
    if not cfg.n3:
        return base

    def n3_term(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
        penalty = n3_penalty(model, batch)
        return cfg.n3 * penalty, {"n3": float(penalty.detach())}

    return with_extra_loss(base, n3_term)


def cross_entropy_loss(cfg: KGEConfig, kg: KnowledgeGraph, generator: torch.Generator,
                       generated: GeneratedStore | None = None) -> LossFn:
    """``kge.loss`` 1vsall, kvsall or shared as a trainer loss term; ``generated`` adds each
    query's generated negatives to its softmax (1vsall, shared)."""
    smoothing = cfg.label_smoothing

    def extra(batch: Tensor) -> dict:
        if generated is None:
            return {}
        return {"extra": generated.both_sides(batch),
                "extra_log_prior": generated.log_prior.to(batch.device)}

    if cfg.loss == "1vsall":
        def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
            return one_vs_all_loss(model, batch, smoothing, **extra(batch)), {}
    elif cfg.loss == "kvsall":
        known = FilterIndex(kg.train, kg.num_relations)

        def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
            return k_vs_all_loss(model, batch, known, smoothing), {}
    elif cfg.loss == "shared":
        def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
            return shared_pool_loss(model, batch, cfg.shared_pool, generator, smoothing,
                                    **extra(batch)), {}
    else:
        raise ValueError(f"unknown kge.loss {cfg.loss!r}")
    return loss_fn


def sampled_loss(sampler: NegativeSampler, temperature: float,
                 generator: torch.Generator) -> LossFn:
    """Self-adversarial loss over the negatives ``sampler`` draws from ``generator``."""

    def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
        return kge_loss(model, batch, sampler.sample(batch, generator, model), temperature), {}

    return loss_fn


def with_extra_loss(base: LossFn, extra: LossFn) -> LossFn:
    """``base + extra`` for one step, their stats merged (NTAT's ``lambda L_HA`` on top of the
    ordinary loss)."""

    def loss_fn(model: MultimodalKGE, batch: Tensor, step: int) -> tuple[Tensor, dict]:
        loss, stats = base(model, batch, step)
        extra_loss, extra_stats = extra(model, batch, step)
        return loss + extra_loss, {**stats, **extra_stats}

    return loss_fn


def selection_subset(num_valid: int, max_triples: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of the validation triples that select the checkpoint: a fixed random
    ``max_triples`` of them (all when ``max_triples`` is 0 or not smaller)."""
    if max_triples and num_valid > max_triples:
        return torch.randperm(num_valid, generator=generator)[:max_triples].sort().values
    return torch.arange(num_valid)


def validator(valid: Tensor, filter_index: FilterIndex, num_entities: int,
              max_triples: int, batch_size: int, generator: torch.Generator) -> Validate:
    """Filtered realistic MRR on a fixed random subset of ``valid`` (both sides; see
    :func:`selection_subset`)."""
    valid = valid[selection_subset(len(valid), max_triples, generator)]

    def validate(model: MultimodalKGE) -> float:
        result = evaluate(model.link_predictor(), valid, filter_index, num_entities,
                          batch_size=batch_size, progress=False)
        return float(result["mrr"])

    return validate
