"""Does the sampler work? Scores of generated negatives per hardness level.

For a sample of triples, compares the mean score of positives, uniform negatives and the
generated negatives of each level (tail-replaced ``(h, r, t^)`` and head-replaced
``(h^, r, t)``). A useful sampler gives positives > level 1 > ... > level L > uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dhns.kge.model import MultimodalKGE
from dhns.negatives.hierarchical import HierarchicalGenerator
from dhns.negatives.ntat import embed_with_generated


@torch.no_grad()
def level_scores(model: MultimodalKGE, generator: HierarchicalGenerator, triples: Tensor,
                 rng: torch.Generator) -> dict[str, Tensor]:
    """Per-sample scores ``{"positive": (n,), "uniform": (2n,), "t=<k>": (2n,), ...}``."""
    n = len(triples)
    gen = generator.generate(model, triples, rng)
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
