"""KBGAN: a small generator KGE, trained by REINFORCE, picks the negatives.

Cai & Wang, "KBGAN: Adversarial Learning for Knowledge Graph Embeddings", NAACL 2018.

Faithful: per positive, the generator (a DistMult of its own) scores a pool of uniformly
drawn candidates for the corrupted side and samples negatives from the softmax of those
scores; the model being trained is the discriminator, and its score of each sampled negative
is the generator's reward, with a baseline subtracted (policy gradient,
``-(reward - baseline) * log p``). Simplified: the generator starts from random weights (the
paper pretrains it), draws ``num_negatives`` per positive with replacement (the paper one),
takes one (lazy) Adam step per ``sample`` call, and its baseline is an exponential moving
average of past rewards; the discriminator keeps whatever loss the training stage uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dhns.config import COUNT, FRACTION, POSITIVE, num
from dhns.kge.model import MultimodalKGE
from dhns.kge.negatives import NegativeBatch
from dhns.optim import adam_rows
from dhns.samplers.base import (
    NegativeSampler,
    SamplerContext,
    anchor_entities,
    own_entities,
    replace_own,
)
from dhns.samplers.registry import register

#: The tensors :meth:`KBGANSampler.state_dict` holds once the generator exists.
TABLES = ("entity", "relation")
STATE_KEYS = (*TABLES, *(f"{t}_{m}" for t in TABLES for m in ("exp_avg", "exp_avg_sq")),
              "step", "baseline")


@register
class KBGANSampler(NegativeSampler):
    """Negatives sampled by an adversarially trained DistMult generator (see the module)."""

    name = "kbgan"
    per_positive = True
    uses_model = True
    cost = "scores pool candidates per positive with a small generator, plus one update"

    @dataclass
    class Options:
        pool: int = num(64, COUNT)      # uniform candidates the generator scores per positive
        dim: int = num(32, COUNT)       # generator embedding width
        lr: float = num(1e-3, POSITIVE)  # generator Adam learning rate
        # Weight of the past in the reward baseline (0: the current batch's mean reward).
        baseline_decay: float = num(0.9, FRACTION)

    def __init__(self, context: SamplerContext, num_negatives: int, options: Options | None = None,
                 chunk_size: int = 64) -> None:
        super().__init__(context, num_negatives, options, chunk_size)
        self._reset()

    def _reset(self) -> None:
        """No generator yet. It is built on the first sample (see :meth:`_build`): the
        relation count may come from the model, and the init is drawn from the run's
        generator."""
        self._params: dict[str, Tensor] = {}
        self._exp_avg: dict[str, Tensor] = {}
        self._exp_avg_sq: dict[str, Tensor] = {}
        self._step = 0
        self._baseline: Tensor | None = None

    # -- the generator ---------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._params)

    def _build(self, generator: torch.Generator, model: MultimodalKGE) -> None:
        """Random generator tables. One int is drawn from ``generator`` to seed a private
        generator: the run's seed decides the init, and the cost to its stream is one draw
        whatever the table sizes."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        local = torch.Generator().manual_seed(seed)
        num_relations = self.context.num_relations or int(model.relation.shape[0])
        # Entries of variance 1/dim: scores of a few hundredths, so the generator starts out
        # close to the uniform sampler and learns from there.
        bound = math.sqrt(3.0 / self.options.dim)
        for key, rows in zip(TABLES, (self.num_entities, num_relations), strict=True):
            table = torch.empty(rows, self.options.dim).uniform_(-bound, bound, generator=local)
            self._params[key] = table
            self._exp_avg[key] = torch.zeros_like(table)
            self._exp_avg_sq[key] = torch.zeros_like(table)

    def _to(self, device: torch.device) -> None:
        """Move the generator (and its Adam moments) to the batch's device, once."""
        if self._params["entity"].device == device:
            return
        for store in (self._params, self._exp_avg, self._exp_avg_sq):
            for key in TABLES:
                store[key] = store[key].to(device)
        if self._baseline is not None:
            self._baseline = self._baseline.to(device)

    def scores(self, anchors: Tensor, relations: Tensor, candidates: Tensor) -> Tensor:
        """Generator logits: anchor ids ``(B,)``, relation ids ``(B,)``, candidate ids
        ``(B, P)`` -> ``(B, P)``. DistMult is symmetric, so one formula serves both sides."""
        ent, rel = self._params["entity"], self._params["relation"]
        query = ent[anchors] * rel[relations]
        return torch.einsum("bd,bpd->bp", query, ent[candidates])

    # -- sampling --------------------------------------------------------------------------
    def sample(self, batch: Tensor, generator: torch.Generator,
               model: MultimodalKGE | None = None) -> NegativeBatch:
        if model is None:
            raise ValueError("negative sampler kbgan needs the model being trained: its "
                             "scores are the generator's reward")
        if not self.built:
            self._build(generator, model)
        device = batch.device
        self._to(device)
        corrupt_tail = self.corrupt_sides(batch, generator).to(device)
        own = own_entities(batch, corrupt_tail)
        anchors = anchor_entities(batch, corrupt_tail)
        relations = batch[:, 1]
        pool = torch.randint(self.num_entities, (len(batch), self.options.pool),
                             generator=generator).to(device)
        # Before scoring, so the log-probabilities below are those of what is returned.
        pool = replace_own(pool, own, self.num_entities, generator)

        # Gradients only for the rows this batch touches (lazy Adam, as torch's SparseAdam):
        # the step costs O(B * pool * dim), not O(N * dim).
        ent_rows, ent_index = torch.unique(torch.cat([anchors, pool.reshape(-1)]),
                                           return_inverse=True)
        rel_rows, rel_index = torch.unique(relations, return_inverse=True)
        with torch.enable_grad():  # a caller's no_grad must not stop the generator learning
            ent = self._params["entity"][ent_rows].requires_grad_()
            rel = self._params["relation"][rel_rows].requires_grad_()
            b = len(batch)
            query = ent[ent_index[:b]] * rel[rel_index]
            cand = ent[ent_index[b:]].reshape(b, self.options.pool, -1)
            logp = torch.log_softmax(torch.einsum("bd,bpd->bp", query, cand), dim=-1)
            # The generator's CPU (or device) stream decides the draw: multinomial there.
            probs = logp.detach().exp().to(generator.device)
            picked = torch.multinomial(probs, self.num_negatives, replacement=True,
                                       generator=generator).to(device)
            candidates = pool.gather(1, picked)
            reward = self._reward(model, batch, corrupt_tail, candidates)
            advantage = reward - self._next_baseline(reward)
            loss = -(advantage * logp.gather(1, picked)).mean()
            grad_ent, grad_rel = torch.autograd.grad(loss, [ent, rel])
        self._step += 1
        self._adam("entity", ent_rows, grad_ent)
        self._adam("relation", rel_rows, grad_rel)
        return NegativeBatch(candidates, corrupt_tail)

    @staticmethod
    def _reward(model: MultimodalKGE, batch: Tensor, corrupt_tail: Tensor,
                candidates: Tensor) -> Tensor:
        """The discriminator's score of each negative ``(B, K)``, computed as the loss does
        (:func:`dhns.kge.loss.score_with_negatives`: tail query ``h * r``, head query
        ``t * conj(r)``, so reciprocal models are scored right too). No gradient reaches the
        model."""
        with torch.no_grad():
            h = model.entity_embeddings(batch[:, 0])
            t = model.entity_embeddings(batch[:, 2])
            r = model.relation[batch[:, 1]]
            scorer = model.scorer
            query = torch.where(corrupt_tail[:, None], scorer.query(h, r, "tail"),
                                scorer.query(t, r, "head"))
            return scorer.match(query[:, None], model.entity_embeddings(candidates)).detach()

    def _next_baseline(self, reward: Tensor) -> Tensor:
        """The baseline for this batch (the running mean so far; the batch mean on the first
        call, so the first step is centred too), then fold this batch's mean into it."""
        mean = reward.mean()
        baseline = mean if self._baseline is None else self._baseline
        decay = self.options.baseline_decay
        self._baseline = (mean if self._baseline is None
                          else decay * self._baseline + (1 - decay) * mean).detach()
        return baseline.detach()

    def _adam(self, key: str, rows: Tensor, grad: Tensor) -> None:
        """One Adam step on ``rows`` of table ``key``; moments of other rows stay as they are and
        the bias correction uses the global step (torch.optim.SparseAdam's rule)."""
        adam_rows(self._params[key], self._exp_avg[key], self._exp_avg_sq[key], rows, grad,
                  self._step, self.options.lr)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Generator tables, their Adam moments, the step count and the baseline (empty
        before the first sample: the generator is built then)."""
        if not self.built:
            return {}
        state = {key: self._params[key].clone() for key in TABLES}
        for key in TABLES:
            state[f"{key}_exp_avg"] = self._exp_avg[key].clone()
            state[f"{key}_exp_avg_sq"] = self._exp_avg_sq[key].clone()
        state["step"] = torch.tensor(self._step, dtype=torch.long)
        # Set by the sample that built the generator: a built sampler always has one.
        assert self._baseline is not None
        state["baseline"] = self._baseline.clone()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if not state:  # saved before the first sample: build afresh then
            self._reset()
            return
        if set(state) != set(STATE_KEYS):
            raise ValueError(f"negative sampler kbgan: state keys {sorted(state)}, expected "
                             f"{sorted(STATE_KEYS)}")
        entity = state["entity"]
        if entity.shape != (self.num_entities, self.options.dim):
            raise ValueError(f"negative sampler kbgan: generator entity table "
                             f"{tuple(entity.shape)}, expected "
                             f"({self.num_entities}, {self.options.dim})")
        # Copies on the tables' device; sample moves them to the batch's device if needed.
        device = entity.device

        def copy(name: str) -> Tensor:
            return state[name].detach().to(device, torch.float32, copy=True)

        for key in TABLES:
            self._params[key] = copy(key)
            self._exp_avg[key] = copy(f"{key}_exp_avg")
            self._exp_avg_sq[key] = copy(f"{key}_exp_avg_sq")
        self._step = int(state["step"])
        self._baseline = copy("baseline")
