"""How hard each sampler's negatives are on a trained checkpoint.

    python -m bench.sampler_hardness --base ../base-mkgy0 [--batch 512] [--only sans,mans]

For one fixed batch of training positives (the first ``--batch`` of a seeded permutation),
each sampler draws negatives three times (so caches and tables are warm) with the base's
``kge.num_negatives``; the third draw is scored by the base's pretrained KGE. Prints per
sampler the mean positive score, the mean and mean-max negative score, and the share of
negatives that outscore their positive. One torch thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from dhns.config import params_from_dict
from dhns.data import KnowledgeGraph
from dhns.kge.loss import score_with_negatives
from dhns.samplers import SamplerContext, build_sampler, known_samplers, sampler_options
from dhns.training.checkpoint import load_kge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--only", help="comma-separated samplers (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = params_from_dict(yaml.safe_load((args.base / "params.yaml").read_text()))
    kg = KnowledgeGraph.load(args.base / "artifacts" / "prepared")
    model, _ = load_kge(args.base / "artifacts" / "pretrain" / "model.pt",
                        vocabulary=kg.vocabulary())
    context = SamplerContext(kg.num_entities, kg.num_relations, kg.train)
    g = torch.Generator().manual_seed(0)
    batch = kg.train[torch.randperm(len(kg.train), generator=g)[:args.batch]]
    print("| sampler | positive score | negative score | mean max negative | "
          "negatives above their positive |")
    print("|---|---|---|---|---|")
    for name in args.only.split(",") if args.only else known_samplers():
        sampler = build_sampler(name, context, params.kge.num_negatives,
                                sampler_options(params.kge, name))
        with torch.no_grad():
            for _ in range(3):
                negatives = sampler.sample(batch, g, model)
            pos, neg = score_with_negatives(model, batch, negatives)
        above = float((neg > pos[:, None]).float().mean())
        print(f"| {name} | {float(pos.mean()):.3f} | {float(neg.mean()):.3f} | "
              f"{float(neg.max(1).values.mean()):.3f} | {100 * above:.3f}% |")


if __name__ == "__main__":
    main()
