"""NTAT: negative triple-adaptive training with hardness-aware margins (docs/method.md, section 4).

``L = L_KGC + lambda * L_HA``; this module provides ``lambda * L_HA`` as a loss term for the
trainer. ``L_HA`` is the weighted mean over levels ``k`` and the three negative types
``(h, r, t^)``, ``(h^, r, t)``, ``(h^, r, t^)`` of ``-log s(f(pos)) - log s(-f_k(neg))`` where,
for distance models, ``f_k(neg) = gamma_k - dist(neg)`` with ``gamma_k = m_k * gamma``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.config import Params
from dhns.diffusion.model import DiffusionModel
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.negatives.false_negatives import known_answer_keep
from dhns.negatives.hierarchical import (
    GeneratedNegatives,
    HierarchicalLevels,
    RandomLevels,
)
from dhns.negatives.pairs import diffusion_pairs
from dhns.optim import adam


def _replace(real: Tensor, real_mask: Tensor, generated: Tensor, generated_mask: Tensor
             ) -> tuple[Tensor, Tensor]:
    """Per-level modality embeddings ``(M, L*B, D)`` with generated rows swapped in."""
    levels = generated.shape[0]
    gen = generated.permute(1, 0, 2, 3)  # (M, L, B, D)
    mixed = torch.where(generated_mask[:, None, :, None], gen, real[:, None])
    mask = (real_mask | generated_mask)[:, None].expand(-1, levels, -1)
    return mixed.flatten(1, 2), mask.flatten(1, 2)


def fuse_generated(model: MultimodalKGE, generated: Tensor, generated_mask: Tensor,
                   real: Tensor | None = None, real_mask: Tensor | None = None) -> Tensor:
    """Fused embeddings ``(L, B, D)`` of generated entities, by the KGE's own attention.

    ``generated`` ``(L, M, B, D)`` and ``generated_mask`` ``(M, B)`` as in
    :class:`GeneratedNegatives`. ``real`` ``(M, B, D)`` / ``real_mask`` ``(M, B)``: the replaced
    entity's modality embeddings, kept where a modality was not generated (what NTAT does).
    Without them the generated entity has only its generated modalities; every column of
    ``generated_mask`` then needs at least one True.
    """
    levels, _, b, _ = generated.shape
    if real is None or real_mask is None:
        real = torch.zeros_like(generated[0])
        real_mask = torch.zeros_like(generated_mask)
    return model.fuse(*_replace(real, real_mask, generated, generated_mask)).reshape(levels, b, -1)


def embed_with_generated(model: MultimodalKGE, negatives: GeneratedNegatives
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fused ``e_h``, relation ``r``, ``e_t`` ``(B, D)`` of the positives and the generated
    ``h^``, ``t^`` ``(L, B, D)`` (generated modality rows swapped into the real entity)."""
    batch = negatives.batch
    b = len(batch)
    emb, mask = model.modality_embeddings(torch.cat([batch[:, 0], batch[:, 2]]))
    real_h, real_t, mask_h, mask_t = emb[:, :b], emb[:, b:], mask[:, :b], mask[:, b:]
    e_h, e_t = model.fuse(real_h, mask_h), model.fuse(real_t, mask_t)
    h_hat = fuse_generated(model, negatives.heads, negatives.head_generated, real_h, mask_h)
    t_hat = fuse_generated(model, negatives.tails, negatives.tail_generated, real_t, mask_t)
    return e_h, model.relation[batch[:, 1]], e_t, h_hat, t_hat


def _ha_scores(model: MultimodalKGE, negatives: GeneratedNegatives,
               level_weights: list[float], level_margins: list[float] | None
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Positive scores ``(B,)``, margin-shifted generated scores ``f_k(neg)`` ``(3, L, B)`` and
    the level weights ``(L,)`` that :func:`hardness_aware_loss` combines."""
    levels = negatives.tails.shape[0]
    if len(level_weights) != levels or (level_margins is not None
                                        and len(level_margins) != levels):
        raise ValueError(f"{levels} hardness levels but {len(level_weights)} level weights"
                         f" and {len(level_margins or [])} level margins")
    e_h, r, e_t, h_hat, t_hat = embed_with_generated(model, negatives)
    scorer = model.scorer
    pos = scorer.score(e_h, r, e_t)  # (B,)
    neg = torch.stack([scorer.score(e_h, r, t_hat), scorer.score(h_hat, r, e_t),
                       scorer.score(h_hat, r, t_hat)])  # (3, L, B)
    if scorer.distance_based and level_margins is not None:
        # score = gamma - dist, so gamma_k - dist = score - gamma + m_k * gamma.
        shift = torch.tensor(level_margins, device=neg.device) * scorer.gamma - scorer.gamma
        neg = neg + shift[None, :, None]
    return pos, neg, torch.tensor(level_weights, device=neg.device)


def hardness_aware_loss(model: MultimodalKGE, negatives: GeneratedNegatives,
                        level_weights: list[float], level_margins: list[float] | None,
                        adversarial_temperature: float | None = None,
                        positive_term: bool = True, keep: Tensor | None = None,
                        ) -> tuple[Tensor, dict[str, float]]:
    """``L_HA`` for the positives of ``negatives.batch`` (B, 3); gradients reach the KGE only
    through the real embeddings (generated rows are constants).

    With ``adversarial_temperature`` (our variant, ``retrain.ha_weighting: adversarial``) each
    positive's ``3 L`` generated negatives are weighted by ``w_k softmax(alpha f_k(neg))``
    (detached, as in the self-adversarial loss) instead of ``w_k`` alone: the negatives the
    model still scores high carry the loss, where the plain mean lets the many saturated ones
    (``-log s(-f) ~ 0``) dilute it. ``positive_term=False`` (``retrain.positive_term``) drops
    the ``-log s(f(pos))`` every cell adds, which otherwise makes L_HA mostly a second
    positive loss; see :func:`hardness_aware_parts`. ``keep`` ``(3, L, B)`` bool: the
    generated negatives that count (``retrain.ha_exclude_known``); None = all.
    """
    parts = hardness_aware_parts(model, negatives, level_weights, level_margins,
                                 adversarial_temperature, keep)
    loss = parts.positive + parts.negative if positive_term else parts.negative
    return loss, {"l_ha": float(loss.detach())}


@dataclass
class HAParts:
    """``L_HA = positive + negative`` (both scalar tensors, in the graph):
    ``positive = mean_b -log s(f(pos_b))``, ``negative`` = the (weighted) mean of
    ``-log s(-f_k(neg))``."""

    positive: Tensor
    negative: Tensor


def hardness_aware_parts(model: MultimodalKGE, negatives: GeneratedNegatives,
                         level_weights: list[float], level_margins: list[float] | None,
                         adversarial_temperature: float | None = None,
                         keep: Tensor | None = None) -> HAParts:
    """:func:`hardness_aware_loss`'s value split into the part from the positives and the part
    from the generated negatives (the loss is their sum), e.g. to measure each part's
    gradient. Same arguments; an excluded negative (``keep`` False) adds nothing, and a
    positive whose negatives are all excluded adds nothing to the negative part."""
    pos, neg, weights = _ha_scores(model, negatives, level_weights, level_margins)
    positive = -F.logsigmoid(pos).mean()
    if adversarial_temperature is None:
        if keep is None:
            per_level = -F.logsigmoid(-neg).mean(dim=(0, 2))  # (L,)
        else:
            kept = keep.to(neg.dtype)
            per_level = ((-F.logsigmoid(-neg) * kept).sum(dim=(0, 2))
                         / kept.sum(dim=(0, 2)).clamp(min=1))
        negative = (weights * per_level).sum() / weights.sum()
    else:
        flat = neg.permute(2, 0, 1).reshape(len(pos), -1)
        logits = adversarial_temperature * flat.detach() + weights.repeat(3).log()
        if keep is not None:
            logits = logits.masked_fill(~keep.permute(2, 0, 1).reshape(len(pos), -1),
                                        float("-inf"))
        # A row with every negative excluded is all NaN after the softmax: it weighs nothing.
        p = torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)
        negative = -(p * F.logsigmoid(-flat)).sum(-1).mean()
    return HAParts(positive, negative)


class NTATLoss:
    """Trainer loss term ``lambda * L_HA`` with regeneration, subsetting and joint training.

    Negatives are generated for the first ``generate_fraction`` of a batch and reused for
    ``refresh_every`` steps (scored against the current embeddings each step), trading the
    diffusion's cost against freshness. With ``joint_lr`` set, the diffusion model also takes one
    denoising step per generation on the current (detached) embeddings.

    For a diffusion model trained from the KGE's first epoch (``retrain.start: scratch``):
    ``standardisation_momentum`` makes each joint step move the diffusion model's standardisation
    towards the batch's statistics, since the embeddings' scale keeps changing.
    ``diffusion_weight`` > 0 adds ``diffusion_weight * L_diff`` to the returned loss with its
    inputs attached, so L_diff's gradient reaches the KGE (the reference code); the denoiser's
    own gradient from that backward is applied at the next call, before anything else.

    ``exclude_known`` (``retrain.ha_exclude_known``): at each generation, the generated
    negatives whose nearest real entity is a known answer of their query in this index (likely
    false negatives) are left out of ``L_HA`` until the next; :attr:`excluded` counts them.
    """

    def __init__(self, hierarchy: HierarchicalLevels, lambda_ha: float,
                 level_weights: list[float], level_margins: list[float] | None,
                 rng: torch.Generator, refresh_every: int = 1, generate_fraction: float = 1.0,
                 joint_lr: float | None = None,
                 adversarial_temperature: float | None = None,
                 positive_term: bool = True,
                 standardisation_momentum: float | None = None,
                 diffusion_weight: float = 0.0,
                 exclude_known: FilterIndex | None = None) -> None:
        if diffusion_weight > 0 and not joint_lr:
            raise ValueError("diffusion_weight needs joint training (joint_lr)")
        self.hierarchy = hierarchy
        self.standardisation_momentum = standardisation_momentum
        self.diffusion_weight = diffusion_weight
        self.positive_term = positive_term
        self.lambda_ha = lambda_ha
        self.level_weights = level_weights
        self.level_margins = level_margins
        self.adversarial_temperature = adversarial_temperature
        self.rng = rng
        self.refresh_every = max(1, refresh_every)
        self.generate_fraction = generate_fraction
        self.cached: GeneratedNegatives | None = None
        self.exclude_known = exclude_known
        self.keep: Tensor | None = None
        #: ``[excluded, generated]`` negatives over all generations (``exclude_known``).
        self.excluded = [0, 0]
        diffusion: DiffusionModel = hierarchy.diffusion
        self.joint_optimizer = (adam(diffusion.denoiser.parameters(), lr=joint_lr)
                                if joint_lr else None)
        self.seconds = {"generate": 0.0, "score": 0.0, "joint": 0.0}
        self.generations = 0
        #: ``(step, positives)`` per generation: what :func:`~dhns.negatives.diagnostics.
        #: epoch_coverage` turns into the fraction of the training set that got negatives.
        self.generated: list[tuple[int, int]] = []

    def __call__(self, model: MultimodalKGE, batch: Tensor, step: int
                 ) -> tuple[Tensor, dict[str, float]]:
        diffusion_loss = None
        if self.joint_optimizer is not None:
            self._apply_pending_gradients()
        if self.cached is None or step % self.refresh_every == 0:
            count = max(1, math.ceil(self.generate_fraction * len(batch)))
            sub = batch[:count]
            start = time.perf_counter()
            if self.joint_optimizer is not None:
                diffusion_loss = self._joint_step(model, sub)
            self.seconds["joint"] += time.perf_counter() - start
            start = time.perf_counter()
            self.cached = self.hierarchy.generate(model, sub, self.rng)
            self.keep = self.keep_mask(model, self.cached)
            if self.keep is not None:
                self.excluded[0] += int((~self.keep).sum())
                self.excluded[1] += self.keep.numel()
            self.seconds["generate"] += time.perf_counter() - start
            self.generations += 1
            self.generated.append((step, count))
        start = time.perf_counter()
        loss, stats = hardness_aware_loss(model, self.cached, self.level_weights,
                                          self.level_margins, self.adversarial_temperature,
                                          self.positive_term, self.keep)
        self.seconds["score"] += time.perf_counter() - start
        total = self.lambda_ha * loss
        if diffusion_loss is not None:
            stats = {**stats, "diffusion": float(diffusion_loss.detach())}
            total = total + self.diffusion_weight * diffusion_loss
        return total, stats

    def keep_mask(self, model: MultimodalKGE, negatives: GeneratedNegatives
                  ) -> Tensor | None:
        """``(3, L, B)`` bool of the negatives ``L_HA`` counts, or None (all) without
        ``exclude_known``."""
        if self.exclude_known is None:
            return None
        with torch.no_grad():
            _, _, _, h_hat, t_hat = embed_with_generated(model, negatives)
            return known_answer_keep(model, negatives.batch, h_hat, t_hat, self.exclude_known)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as this one would: the generator's state, the
        cached negatives, the generation log and, when joint, the diffusion model and its
        optimiser."""
        state: dict[str, Any] = {
            "rng": self.rng.get_state(),
            "generated": torch.tensor(self.generated, dtype=torch.long).reshape(-1, 2),
            "generations": self.generations, "excluded": torch.tensor(self.excluded)}
        if self.cached is not None:
            state["cached"] = dataclasses.asdict(self.cached)
        if self.keep is not None:
            state["keep"] = self.keep
        if self.joint_optimizer is not None:
            state["diffusion"] = self.hierarchy.diffusion.state_dict()
            state["joint_optimizer"] = self.joint_optimizer.state_dict()
            pending = [p.grad for p in self.hierarchy.diffusion.denoiser.parameters()]
            if any(g is not None for g in pending):
                state["pending_gradients"] = pending
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])
        self.generated = [tuple(row) for row in state["generated"].tolist()]
        self.generations = int(state["generations"])
        self.excluded = [int(v) for v in state.get("excluded", torch.zeros(2)).tolist()]
        device = next(self.hierarchy.diffusion.parameters()).device
        self.cached = (GeneratedNegatives(**{k: v.to(device) for k, v in state["cached"].items()})
                       if "cached" in state else None)
        self.keep = state["keep"].to(device) if "keep" in state else None
        if self.joint_optimizer is not None:
            self.hierarchy.diffusion.load_state_dict(state["diffusion"])
            self.joint_optimizer.load_state_dict(state["joint_optimizer"])
            for param, grad in zip(self.hierarchy.diffusion.denoiser.parameters(),
                                   state.get("pending_gradients", ()), strict=False):
                param.grad = None if grad is None else grad.to(param.device)

    def _joint_step(self, model: MultimodalKGE, batch: Tensor) -> Tensor | None:
        """One denoising step of the diffusion model on ``batch``'s current embeddings; with
        ``diffusion_weight``, returns L_diff still attached to the KGE instead of stepping."""
        diffusion = self.hierarchy.diffusion
        attached = self.diffusion_weight > 0
        x0, c, stream = diffusion_pairs(model, batch, diffusion.modalities, detach=not attached)
        if self.standardisation_momentum is not None:
            diffusion.track_standardisation(x0, c, stream, self.standardisation_momentum)
        diffusion.train()
        loss, _ = diffusion.loss(x0, c, stream, self.rng, detach=not attached)
        diffusion.eval()
        if attached:
            return loss
        self.joint_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.joint_optimizer.step()
        return None

    def _apply_pending_gradients(self) -> None:
        """Step the diffusion model on the gradient the trainer's backward left in the denoiser (an
        attached L_diff of the previous generation), then clear it."""
        params = list(self.hierarchy.diffusion.denoiser.parameters())
        if any(p.grad is not None for p in params):
            self.joint_optimizer.step()
            self.joint_optimizer.zero_grad(set_to_none=True)


#: Per joint step, how far the diffusion model's standardisation moves towards the batch's
#: statistics when it trains from the KGE's first epoch (about the last 50 generations' average).
SCRATCH_STANDARDISATION_MOMENTUM = 0.02


def ntat_from_params(params: Params, diffusion: DiffusionModel, rng: torch.Generator,
                     known: FilterIndex | None = None) -> NTATLoss:
    """NTAT's loss term as the ``retrain`` and ``model`` params ask for (``faithful``: full
    ancestral chain, fresh negatives for the whole batch at every step). ``known``: the
    training triples, needed by ``retrain.ha_exclude_known``."""
    cfg = params.retrain
    faithful = cfg.faithful
    if cfg.ha_exclude_known and known is None:
        raise ValueError("retrain.ha_exclude_known needs the known triples (known=)")
    levels = RandomLevels if cfg.ha_source == "random" else HierarchicalLevels
    hier = levels(diffusion, params.model.levels,
                  None if faithful else params.model.sampling_steps)
    return NTATLoss(
        hier, cfg.lambda_ha, cfg.level_weights, cfg.level_margins if cfg.margins else None,
        rng=rng,
        refresh_every=1 if faithful else cfg.refresh_every,
        generate_fraction=1.0 if faithful else cfg.generate_fraction,
        joint_lr=params.model.lr if cfg.joint else None,
        adversarial_temperature=(params.kge.adversarial_temperature
                                 if cfg.ha_weighting == "adversarial" else None),
        positive_term=cfg.positive_term,
        # From scratch the embeddings' scale moves: follow it (momentum per joint step).
        standardisation_momentum=SCRATCH_STANDARDISATION_MOMENTUM
        if cfg.start == "scratch" else None,
        diffusion_weight=cfg.diffusion_weight,
        exclude_known=known if cfg.ha_exclude_known else None,
    )
