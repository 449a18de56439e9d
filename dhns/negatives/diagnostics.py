"""Does the diffusion model work? Scores of generated negatives per hardness level.

For a sample of triples, compares the mean score of positives, uniform negatives and the
generated negatives of each level (tail-replaced ``(h, r, t^)`` and head-replaced
``(h^, r, t)``). A useful diffusion model gives positives > level 1 > ... > level L > uniform.
The dispersion of the generated embeddings (1 = as spread as the real ones) tells a diffusion model
that shrinks towards its condition (< 1: harder negatives than its model of the data) from one
whose reverse chain amplifies its own errors (> 1).

Against the real entities: :func:`generated_ranks` (where a generated negative would rank
among the real wrong answers of its query) and :func:`nearest_real_entity` (is the real
entity nearest to it a true answer, i.e. is it a likely false negative), summarised by
:func:`real_entity_diagnostics`. For NTAT: :func:`loss_gradient_report` (how much of the
gradient each loss part gives) and :func:`epoch_coverage` (which fraction of the training
positives got generated negatives per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.kge.scoring import Direction
from dhns.negatives.false_negatives import answers_on, nearest_real_entity
from dhns.negatives.hierarchical import GeneratedNegatives, HierarchicalLevels
from dhns.negatives.ntat import NTATLoss, embed_with_generated, hardness_aware_parts
from dhns.training.trainer import LossFn


@torch.no_grad()
def level_scores(model: MultimodalKGE, hier: HierarchicalLevels, triples: Tensor,
                 rng: torch.Generator, negatives: GeneratedNegatives | None = None
                 ) -> dict[str, Tensor]:
    """Per-sample scores ``{"positive": (n,), "uniform": (2n,), "t=<k>": (2n,), ...}``.

    ``negatives``: already generated for ``triples`` (else generated here from ``rng``).
    """
    n = len(triples)
    gen = negatives if negatives is not None else hier.generate(model, triples, rng)
    e_h, r, e_t, h_hat, t_hat = embed_with_generated(model, gen)
    score = model.scorer.score
    random_ids = torch.randint(model.config.num_entities, (2, n), generator=rng)
    random_emb = model.entity_embeddings(random_ids.to(triples.device))
    out = {
        "positive": score(e_h, r, e_t),
        "uniform": torch.cat([score(e_h, r, random_emb[0]), score(random_emb[1], r, e_t)]),
    }
    for k, t in enumerate(hier.levels):
        out[f"t={t}"] = torch.cat([score(e_h, r, t_hat[k]), score(h_hat[k], r, e_t)])
    return {name: value.float().cpu() for name, value in out.items()}


@torch.no_grad()
def level_dispersion(model: MultimodalKGE, hier: HierarchicalLevels,
                     negatives: GeneratedNegatives) -> dict[str, float]:
    """Spread of generated modality embeddings relative to the real ones, per level.

    For every generated (modality, direction) stream: ``sqrt(mean_d var_d(generated) /
    var_d(real))`` over the positives that have the stream, averaged over streams. Returns
    ``{"t=<k>": ratio}``; 1 = as dispersed as the data.
    """
    batch = negatives.batch
    real, _ = model.modality_embeddings(torch.cat([batch[:, 2], batch[:, 0]]))
    b = len(batch)
    ratios = torch.zeros(len(hier.levels))
    streams = 0
    for states, mask, rows in ((negatives.tails, negatives.tail_generated, slice(0, b)),
                               (negatives.heads, negatives.head_generated, slice(b, 2 * b))):
        for m in range(mask.shape[0]):
            keep = mask[m].nonzero().squeeze(1)
            if len(keep) < 2:
                continue
            real_var = real[m, rows][keep].float().var(0).clamp(min=1e-12)  # (D,)
            gen_var = states[:, m, keep].float().var(1)  # (L, D)
            ratios += (gen_var / real_var).mean(-1).sqrt().cpu()
            streams += 1
    ratios /= max(streams, 1)
    return {f"t={t}": round(float(r), 4) for t, r in zip(hier.levels, ratios, strict=True)}


def summarise(scores: dict[str, Tensor]) -> dict:
    """Means per group and whether the hardness ordering holds."""
    means = {name: round(float(v.mean()), 4) for name, v in scores.items()}
    level_means = [v for name, v in means.items() if name.startswith("t=")]
    ordered = all(a >= b for a, b in zip(level_means, level_means[1:], strict=False))
    return {
        "mean_score": means,
        "levels_ordered": ordered,
        "levels_between_positive_and_uniform": all(
            means["uniform"] < m < means["positive"] for m in level_means),
    }


def histogram_rows(scores: dict[str, Tensor], bins: int = 40) -> list[dict]:
    """Density per score bin for every group (rows of a DVC line plot)."""
    allv = torch.cat(list(scores.values()))
    lo, hi = float(allv.min()), float(allv.max())
    width = (hi - lo) / bins or 1.0
    hists = {name: torch.histc(v, bins=bins, min=lo, max=hi) / len(v)
             for name, v in scores.items()}
    return [{"score": round(lo + (i + 0.5) * width, 4),
             **{name: round(float(h[i]), 5) for name, h in hists.items()}}
            for i in range(bins)]


# -- generated negatives against the real entities ---------------------------------------------


@torch.no_grad()
def generated_ranks(model: MultimodalKGE, anchors: Tensor, relations: Tensor, generated: Tensor,
                    direction: Direction, filter_index: FilterIndex, batch_size: int = 256
                    ) -> tuple[Tensor, Tensor]:
    """Rank of each generated entity among the real wrong answers of its query.

    Args:
        anchors: ``(B,)`` the known entity (the head for ``direction="tail"``, the tail for
            ``"head"``); relations: ``(B,)``.
        generated: ``(L, B, D)`` fused generated entities (``t^`` or ``h^`` of
            :func:`~dhns.negatives.ntat.embed_with_generated`) for the missing side.
        filter_index: known true triples (train + valid + test); their answers, the query's
            own target included, are not wrong answers and never compete.
        batch_size: queries scored per call; memory is ``(L, batch_size, N)`` booleans.

    Returns:
        ``(ranks, wrong)``: ``ranks`` ``(L, B)`` int64, ``1 + #{real wrong e : f(e) > f(g)}``
        (1 = the generated entity outscores every real wrong answer; a NaN competitor counts
        as above it, and a NaN generated score ranks last); ``wrong`` ``(B,)`` int64, the
        number of real wrong answers (the worst rank is ``wrong + 1``). All entities are
        scored in one call per batch by the ranking path (:meth:`MultimodalKGE.link_predictor`).
    """
    predictor = model.link_predictor()
    scorer = predictor.scorer
    n = len(predictor.entities)
    generated = generated.to(predictor.entities.dtype)
    ranks, wrong = [], []
    for start in range(0, len(anchors), batch_size):
        a = anchors[start:start + batch_size].to(predictor.device)
        r = relations[start:start + batch_size].to(predictor.device)
        scores = (predictor.score_tails(a, r) if direction == "tail"
                  else predictor.score_heads(r, a)).float()  # (b, N)
        query = scorer.query(predictor.entities[a], predictor.relations[r], direction)
        gen = generated[:, start:start + batch_size].transpose(0, 1)  # (b, L, D)
        # the same all-pairs path as the real candidates, so equal embeddings score equal
        g = scorer.match_all(query[:, None], gen)[:, 0].T.float()  # (L, b)
        # n - #(s <= g): candidates above g or NaN (every comparison with a NaN g is False)
        better = n - (scores[None] <= g[:, :, None]).sum(-1)  # (L, b)
        rows, cols = answers_on(filter_index, a, r, direction, scores.device)
        above = ~(scores[rows, cols][None] <= g[:, rows])  # (L, M) known answers above g
        better -= torch.zeros_like(better).index_add_(1, rows, above.long())
        known = torch.zeros(len(a), dtype=torch.int64, device=scores.device)
        known.index_add_(0, rows, torch.ones_like(rows))
        ranks.append(1 + better)
        wrong.append(n - known)
    return torch.cat(ranks, 1).cpu(), torch.cat(wrong).cpu()


def rank_summary(ranks: Tensor, levels: Sequence[int]) -> dict[str, dict[str, float]]:
    """``ranks`` ``(L, n)`` -> ``{"t=<k>": {"mean_rank", "median_rank", "rank1_fraction"}}``."""
    out = {}
    for t, row in zip(levels, ranks.double(), strict=True):
        out[f"t={t}"] = {"mean_rank": round(float(row.mean()), 3),
                         "median_rank": round(float(row.quantile(0.5)), 3),
                         "rank1_fraction": round(float((row == 1).double().mean()), 4)}
    return out


@torch.no_grad()
def real_entity_diagnostics(model: MultimodalKGE, levels: Sequence[int],
                            negatives: GeneratedNegatives, filter_index: FilterIndex,
                            batch_size: int = 256) -> dict:
    """Generated tails and heads of ``negatives`` (``B`` positives, ``L`` levels, fused as
    NTAT fuses them) against the real entities, tails and heads pooled (``2B`` per level).

    Returns ``{"generated_rank": rank_summary(...), "nearest_known_answer": {"t=<k>":
    fraction}, "wrong_answers": mean number of real wrong answers per query}``.
    """
    batch = negatives.batch
    _, _, _, h_hat, t_hat = embed_with_generated(model, negatives)
    h, r, t = batch.unbind(1)
    ranks, known, wrong = [], [], []
    for anchors, generated, direction in ((h, t_hat, "tail"), (t, h_hat, "head")):
        rank, count = generated_ranks(model, anchors, r, generated, direction, filter_index,
                                      batch_size)
        ranks.append(rank)
        wrong.append(count)
        known.append(nearest_real_entity(model, anchors, r, generated, direction,
                                         filter_index, batch_size)[1])
    fractions = torch.cat(known, 1).double().mean(1)
    return {
        "generated_rank": rank_summary(torch.cat(ranks, 1), levels),
        "nearest_known_answer": {f"t={t}": round(float(f), 4)
                                 for t, f in zip(levels, fractions, strict=True)},
        "wrong_answers": round(float(torch.cat(wrong).double().mean()), 2),
    }


# -- NTAT: gradient shares and coverage ---------------------------------------------------------


def gradient_norms(parts: dict[str, Tensor], parameters: Sequence[Tensor]) -> dict[str, float]:
    """L2 norm of the gradient of each scalar loss part w.r.t. ``parameters`` (all of them
    flattened into one vector). Uses :func:`torch.autograd.grad`: no ``.grad`` is touched. A
    part that does not depend on the parameters has norm 0."""
    params = list(parameters)
    out = {}
    for name, part in parts.items():
        if not part.requires_grad:
            out[name] = 0.0
            continue
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        # A sparse gradient (lazy row updates) may hold a row twice: sum them first.
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads if g is not None]
        out[name] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
    return out


def gradient_shares(norms: dict[str, float]) -> dict[str, float]:
    """Each norm's share of their sum (shares sum to 1; NaN for all when every norm is 0)."""
    total = sum(norms.values())
    return {name: v / total if total > 0 else math.nan for name, v in norms.items()}


def ntat_loss_parts(model: MultimodalKGE, batch: Tensor, kgc: LossFn, ntat: NTATLoss,
                    rng: torch.Generator) -> dict[str, Tensor]:
    """The three parts of one NTAT step's loss on ``batch`` (B, 3), with fresh negatives.

    ``kgc``: the ordinary self-adversarial loss term (:func:`dhns.training.kgc.sampled_loss`,
    with its own generator). Negatives are generated from ``rng`` for the first
    ``ntat.generate_fraction`` of the batch, as :class:`NTATLoss` does. Returns scalar tensors
    ``{"kgc": L_KGC, "ha_positive": lambda * L_HA^pos, "ha_negative": lambda * L_HA^neg}``.
    """
    count = max(1, math.ceil(ntat.generate_fraction * len(batch)))
    negatives = ntat.hierarchy.generate(model, batch[:count], rng)
    parts = hardness_aware_parts(model, negatives, ntat.level_weights, ntat.level_margins,
                                 ntat.adversarial_temperature, ntat.keep_mask(model, negatives))
    kgc_loss, _ = kgc(model, batch, 0)
    # Without the positive term (retrain.positive_term false) that part is absent: norm 0.
    positive = parts.positive if ntat.positive_term else torch.zeros(())
    return {"kgc": kgc_loss, "ha_positive": ntat.lambda_ha * positive,
            "ha_negative": ntat.lambda_ha * parts.negative}


def loss_gradient_report(model: MultimodalKGE, batches: Sequence[Tensor], kgc: LossFn,
                         ntat: NTATLoss, rng: torch.Generator) -> dict:
    """Gradient norm of each part of :func:`ntat_loss_parts` w.r.t. the KGE's trainable
    parameters (entity and relation tables, projections, attention), averaged over
    ``batches`` (each ``(B, 3)`` on the model's device), and each part's share of their sum.

    Returns ``{"norm": {part: mean norm}, "share": {part: share}, "batches": count}``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    totals: dict[str, float] = {}
    for batch in batches:
        norms = gradient_norms(ntat_loss_parts(model, batch, kgc, ntat, rng), params)
        for name, value in norms.items():
            totals[name] = totals.get(name, 0.0) + value / len(batches)
    return {"norm": {k: float(f"{v:.6g}") for k, v in totals.items()},
            "share": {k: round(v, 4) for k, v in gradient_shares(totals).items()},
            "batches": len(batches)}


def epoch_coverage(generated: Sequence[tuple[int, int]], steps_per_epoch: int,
                   num_train: int, epochs: int) -> list[float]:
    """Per epoch, positives that got generated negatives / ``num_train``.

    ``generated``: ``(step, positives)`` per generation (:attr:`NTATLoss.generated`), steps
    counted from 0 across epochs as the trainer does; ``epochs`` entries are returned.
    """
    counts = [0] * epochs
    for step, count in generated:
        epoch = step // steps_per_epoch
        if epoch < epochs:
            counts[epoch] += count
    return [c / num_train for c in counts]
