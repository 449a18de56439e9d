"""MMRNS: relation-enhanced multimodal hard negatives (a simplified, training-free version).

After Xu, Xu, Wu, Zhou and Chen, "Relation-enhanced Negative Sampling for Multimodal
Knowledge Graph Completion", ACM Multimedia 2022 (MMRNS). What is kept from the paper:

- a hard negative is an entity *similar to the entity being replaced* in the multimodal
  (structure + text + image) space;
- that similarity is *conditioned on the relation*: the relation decides how much each
  modality counts;
- negatives are drawn from a softmax over the similarity with a temperature (the paper's
  contrastive semantic sampler), mixed with uniform ones.

Where this version simplifies:

- **No learned cross-modal attention.** The paper learns a knowledge-guided cross-modal
  attention (KCA: attention between the visual and textual features, guided by the
  relation) and the
  semantic similarity with a two-way contrastive loss. Here the relation conditioning is a
  per-relation, per-side *weighting of modalities*, computed without training from the
  training graph: for relation ``r`` corrupting its tail, modality ``m`` scores
  ``sep = mean cos_m(t, t') - mean cos_m(t, e)`` over known tails ``t != t'`` of ``r``
  against entities ``e`` at random, i.e. how well ``m``'s cosine similarity tells ``r``'s
  answers apart from arbitrary entities (heads likewise when the head is corrupted). The
  weights are ``softmax_m(sep / weight_temperature)``. Both means come from per-relation
  sums of unit vectors, so nothing ``N x N`` is built.
- **Fixed representations, no fusion.** Text and image use the model's raw standardised
  feature buffers (``feat_<name>``, fixed, so their part of ``sep`` is computed once);
  structure uses the model's structure table ``model.entity``, which trains, so its part is
  recomputed every ``refresh_every`` steps. A freshly initialised structure table separates
  nothing (``sep ~ 0``), so it yields to any modality that does until training makes it
  informative. The
  multimodal similarity is the weighted mean of per-modality cosines over the modalities
  the replaced entity has (``mask_<name>``), a candidate lacking one scoring cosine 0 in it;
  structure alone when the model has no other modality.
- **No Gumbel-softmax.** The paper makes the sampler differentiable (masked Gumbel-softmax)
  and trains it with the KGC model; here the sampler has no parameters: the hard part is a
  draw without replacement (``torch.multinomial``) from ``softmax(sim / temperature)`` over
  ``pool`` uniform candidates per positive, the rest of the ``K`` negatives uniform.
- Known true triples are not filtered out of the negatives (a hard negative may be a false
  one); only the positive's own entity is excluded.

State: the per-relation separations (``(2, R, M)``: side, relation, modality) and the step
counter are returned by :meth:`MMRNSSampler.state_dict`, so a resumed run uses the weights
the uninterrupted one would have used until its next refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dhns.config import COUNT, FRACTION, POSITIVE, num
from dhns.errors import UserError
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.samplers.base import NegativeSampler, SamplerContext, own_entities, replace_own
from dhns.samplers.registry import register

# Elements of the largest temporary (rows x N or relations x N) built at once.
_MAX_ELEMENTS = 1 << 24


@dataclass
class MMRNSOptions:
    """Params of ``mmrns`` (``kge.sampler_options.mmrns``)."""

    pool: int = num(256, COUNT)  # uniform candidates scored per positive
    temperature: float = num(0.1, POSITIVE)  # of softmax(sim / temperature) over the pool
    uniform_share: float = num(0.5, FRACTION)  # share of the K negatives drawn uniformly
    refresh_every: int = num(100, COUNT)  # steps between recomputing the structure weights
    weight_temperature: float = num(0.1, POSITIVE)  # of softmax over modalities' separation


@register
class MMRNSSampler(NegativeSampler):
    """Relation-weighted multimodal hard negatives mixed with uniform ones (module doc)."""

    name = "mmrns"
    Options = MMRNSOptions
    per_positive = True
    uses_model = True
    cost = "per modality: (B, N) dots per step, (R, N) relation sums every refresh_every steps"

    def __init__(self, context: SamplerContext, num_negatives: int,
                 options: MMRNSOptions | None = None, chunk_size: int = 64) -> None:
        super().__init__(context, num_negatives, options, chunk_size)
        if self.num_entities < 2:
            raise UserError("mmrns needs at least 2 entities (a negative differs from the "
                            "positive's own entity)")
        self.num_uniform = int(round(self.options.uniform_share * num_negatives))
        self.num_hard = num_negatives - self.num_uniform
        # Known (relation, entity) pairs per side (0: heads, 1: tails), each pair once: the
        # graph is fixed, so this is done once.
        train = context.train.long().cpu()
        self.pairs = [torch.unique(train[:, [1, side]], dim=0) for side in (0, 2)]
        self._separation: Tensor | None = None  # (2, R, M): side, relation, modality
        self._step = 0

    # -- sampling --------------------------------------------------------------------------
    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        """``(B, K)`` candidates: ``K - uniform`` from softmax(sim / temperature) over
        ``pool`` uniform ones per positive, the rest uniform; never the positive's own."""
        if model is None:
            raise ValueError("negative sampler mmrns scores candidates with the model's "
                             "embeddings and features: pass the model to sample()")
        if model.config.num_entities != self.num_entities:
            raise ValueError(f"mmrns was built for {self.num_entities} entities, the model "
                             f"has {model.config.num_entities}")
        with torch.no_grad():
            return self._sample(batch, generator, model)

    def _sample(self, batch: Tensor, generator: torch.Generator,
                model: MultimodalKGE) -> NegativeBatch:
        device, gen_device = batch.device, generator.device
        weights = self.modality_weights(model)  # (2, R, M), refreshed on schedule
        self._step += 1
        corrupt_tail = self.corrupt_sides(batch, generator).to(device)
        own = own_entities(batch, corrupt_tail)
        size, n = len(batch), self.num_entities
        parts = []
        if self.num_hard:
            # Own-free pool first: the own entity is the most similar to itself and would
            # otherwise win the hard draw only to be replaced by a uniform one.
            pool = torch.randint(n, (size, self.options.pool), generator=generator,
                                 device=gen_device).to(device)
            pool = replace_own(pool, own, n, generator)
            row_weights = weights[corrupt_tail.long(), batch[:, 1]]  # (B, M)
            sim = self.similarity(model, own, pool, row_weights)
            probs = torch.softmax(sim / self.options.temperature, dim=-1)
            # Without replacement: distinct hard negatives (with it only if the pool is
            # smaller than the hard share).
            pick = torch.multinomial(probs.to(gen_device), self.num_hard,
                                     replacement=self.num_hard > self.options.pool,
                                     generator=generator).to(device)
            parts.append(pool.gather(1, pick))
        if self.num_uniform:
            parts.append(torch.randint(n, (size, self.num_uniform), generator=generator,
                                       device=gen_device).to(device))
        candidates = replace_own(torch.cat(parts, dim=1), own, n, generator)
        return NegativeBatch(candidates, corrupt_tail)

    def similarity(self, model: MultimodalKGE, own: Tensor, pool: Tensor,
                   row_weights: Tensor) -> Tensor:
        """``(B, P)``: the weighted mean over modalities of cos(own, candidate).

        A modality the own entity lacks drops out (its weights renormalised over the rest); one
        only the candidate lacks counts as cosine 0: a candidate without the modality that
        matters for the relation is not known to be similar (renormalising per pair would let
        it reach full similarity through a modality the relation barely weighs)."""
        total = torch.zeros(pool.shape, device=pool.device)
        norm = torch.zeros(len(pool), 1, device=pool.device)
        for m, (table, mask) in enumerate(modality_tables(model)):
            cos = _pool_cosines(table, own, pool)
            weight = row_weights[:, m:m + 1]
            if mask is not None:
                weight = weight * mask[own][:, None]
                cos = cos * mask[pool]
            total += weight * cos
            norm += weight
        # Structure always counts and its weight is a softmax share (> 0): norm > 0.
        return total / norm

    # -- relation-guided modality weights --------------------------------------------------
    def modality_weights(self, model: MultimodalKGE) -> Tensor:
        """``(2, R, M)`` softmax over modalities of their separation, by side and relation."""
        tables = modality_tables(model)
        shape = (2, model.config.num_relations, len(tables))
        if self._separation is not None and tuple(self._separation.shape) != shape:
            raise ValueError(f"mmrns state has separations of shape "
                             f"{tuple(self._separation.shape)}, the model needs {shape}")
        if self._separation is None:
            # Text and image buffers never change: their separation is computed once.
            self._separation = torch.stack([
                torch.stack([separation(table, mask, pairs, shape[1]) for table, mask in tables],
                            dim=-1)
                for pairs in self.pairs])
        elif self._step % self.options.refresh_every == 0:
            table, mask = tables[0]  # the structure table trains: refresh its part
            self._separation = self._separation.to(table.device)
            self._separation[:, :, 0] = torch.stack(
                [separation(table, mask, pairs, shape[1]) for pairs in self.pairs])
        self._separation = self._separation.to(model.entity.device)
        return torch.softmax(self._separation / self.options.weight_temperature, dim=-1)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """The separations (once computed) and the step counter, on the CPU."""
        state = {"step": torch.tensor(self._step, dtype=torch.long)}
        if self._separation is not None:
            state["separation"] = self._separation.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        unknown = set(state) - {"step", "separation"}
        if unknown or "step" not in state:
            raise ValueError(f"negative sampler mmrns expects state 'step' (and "
                             f"'separation'), got {sorted(state)}")
        self._step = int(state["step"])
        sep = state.get("separation")
        self._separation = None if sep is None else sep.detach().float().clone()


def modality_tables(model: MultimodalKGE) -> list[tuple[Tensor, Tensor | None]]:
    """``(table (N, d), mask (N,) or None)`` per modality, structure first (always there)."""
    tables: list[tuple[Tensor, Tensor | None]] = [(model.entity.detach(), None)]
    return tables + [(table, mask) for _, table, mask in model.feature_tables()]


def separation(table: Tensor, mask: Tensor | None, pairs: Tensor, num_relations: int) -> Tensor:
    """``(R,)``: mean cosine between known entities of a relation (``pairs`` (n, 2):
    relation, entity; distinct pairs) minus their mean cosine to all entities; 0 where a
    relation has fewer than 2 entities with this modality.

    With unit vectors ``u``, the mean over ``i != j`` in a set of ``n`` is
    ``(|sum u|^2 - n) / (n (n - 1))`` and the mean against all is ``sum u . mean u_all`` / n,
    so only per-relation sums are needed.
    """
    device = table.device
    unit = F.normalize(table.float(), dim=-1)
    pairs = pairs.to(device)
    if mask is not None:
        unit = unit * mask[:, None]  # missing rows are no vectors at all
        pairs = pairs[mask[pairs[:, 1]]]
        present = int(mask.sum())
    else:
        present = len(table)
    if present == 0:
        return torch.zeros(num_relations, device=device)
    overall = unit.sum(0) / present
    sums = torch.zeros(num_relations, unit.shape[1], device=device)
    # Dense relation-by-entity indicator, a block of relations at a time: a matmul sums
    # deterministically (index_add_ on CUDA adds in no fixed order).
    n = len(table)
    step = max(1, _MAX_ELEMENTS // n)
    for start in range(0, num_relations, step):
        stop = min(num_relations, start + step)
        block = pairs[(pairs[:, 0] >= start) & (pairs[:, 0] < stop)]
        indicator = torch.zeros(stop - start, n, device=device)
        indicator[block[:, 0] - start, block[:, 1]] = 1.0
        sums[start:stop] = indicator @ unit
    count = torch.bincount(pairs[:, 0], minlength=num_relations).float()
    safe = count.clamp_min(2)
    within = (sums.pow(2).sum(-1) - count) / (safe * (safe - 1))
    against_all = (sums @ overall) / safe
    return torch.where(count >= 2, within - against_all, torch.zeros_like(count))


def _pool_cosines(table: Tensor, own: Tensor, pool: Tensor) -> Tensor:
    """``(B, P)``: cos(table[own], table[pool]).

    Dots against the whole table, then gathered: one ``(rows, d) @ (d, N)`` matmul per block
    of rows is far faster than gathering ``(B, P, d)`` candidate rows (BLAS against a copy),
    and a block of ``rows x N`` stays small; nothing ``N x N`` is built. Rows without the
    modality are zero, so their cosine is 0."""
    table = table.float()
    norms = table.norm(dim=-1).clamp_min(1e-12)
    anchor = table[own] / norms[own, None]
    out = torch.empty(pool.shape, device=pool.device)
    rows = max(1, _MAX_ELEMENTS // len(table))
    for start in range(0, len(pool), rows):
        block = pool[start:start + rows]
        dots = anchor[start:start + rows] @ table.T
        out[start:start + rows] = dots.gather(1, block) / norms[block]
    return out
