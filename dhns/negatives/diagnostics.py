"""Does the sampler work? Scores of generated negatives per hardness level.

For a sample of triples, compares the mean score of positives, uniform negatives and the
generated negatives of each level (tail-replaced ``(h, r, t^)`` and head-replaced
``(h^, r, t)``). A useful sampler gives positives > level 1 > ... > level L > uniform.
The dispersion of the generated embeddings (1 = as spread as the real ones) tells a sampler
that shrinks towards its condition (< 1: harder negatives than its model of the data) from one
whose reverse chain amplifies its own errors (> 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.negatives.hierarchical import GeneratedNegatives, HierarchicalGenerator
from dhns.negatives.ntat import embed_with_generated


@torch.no_grad()
def level_scores(model: MultimodalKGE, generator: HierarchicalGenerator, triples: Tensor,
                 rng: torch.Generator, negatives: GeneratedNegatives | None = None
                 ) -> dict[str, Tensor]:
    """Per-sample scores ``{"positive": (n,), "uniform": (2n,), "t=<k>": (2n,), ...}``.

    ``negatives``: already generated for ``triples`` (else generated here from ``rng``).
    """
    n = len(triples)
    gen = negatives if negatives is not None else generator.generate(model, triples, rng)
    e_h, r, e_t, h_hat, t_hat = embed_with_generated(model, gen)
    score = model.scorer.score
    random_ids = torch.randint(model.config.num_entities, (2, n), generator=rng)
    random_emb = model.entity_embeddings(random_ids.to(triples.device))
    out = {
        "positive": score(e_h, r, e_t),
        "uniform": torch.cat([score(e_h, r, random_emb[0]), score(random_emb[1], r, e_t)]),
    }
    for k, t in enumerate(generator.levels):
        out[f"t={t}"] = torch.cat([score(e_h, r, t_hat[k]), score(h_hat[k], r, e_t)])
    return {name: value.float().cpu() for name, value in out.items()}


@torch.no_grad()
def level_dispersion(model: MultimodalKGE, generator: HierarchicalGenerator,
                     negatives: GeneratedNegatives) -> dict[str, float]:
    """Spread of generated modality embeddings relative to the real ones, per level.

    For every generated (modality, direction) stream: ``sqrt(mean_d var_d(generated) /
    var_d(real))`` over the positives that have the stream, averaged over streams. Returns
    ``{"t=<k>": ratio}``; 1 = as dispersed as the data.
    """
    batch = negatives.batch
    real, _ = model.modality_embeddings(torch.cat([batch[:, 2], batch[:, 0]]))
    b = len(batch)
    ratios = torch.zeros(len(generator.levels))
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
    return {f"t={t}": round(float(r), 4) for t, r in zip(generator.levels, ratios, strict=True)}


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
