"""The "Make DHNS matter" hypotheses, measured on a finished run's real checkpoints.

Reads ``<run>/params.yaml`` and ``<run>/artifacts/{prepared,pretrain,diffusion}`` (a folder
where ``bench/row.sh`` ran) and writes ``results/probes/<DS>-seed<N>.json``::

    python -m bench.probe --run ../exp-mkgy

On ``--triples`` fixed training triples (seeded) it measures, per hardness level:
1. NTAT's loss on the generated tails ``-log s(-f_k)`` with and without the level margin, and
   the share of tails that score above the query's best real wrong entity;
2. the gradient norm and share of L_KGC and of lambda L_HA's positive and negative parts;
3. the fraction of training positives that get generated negatives per epoch (from the
   params: generate_fraction / refresh_every);
5. abar at the level timesteps (near-duplicate levels when close to each other and to 1);
6. the rank among real wrong entities and the nearest-entity-is-a-known-answer fraction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from dhns.config import params_from_dict, to_dict
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.filter import FilterIndex
from dhns.io import atomic_write_json
from dhns.negatives.diagnostics import (
    generated_ranks,
    loss_gradient_report,
    real_entity_diagnostics,
)
from dhns.negatives.ntat import embed_with_generated, ntat_from_params
from dhns.samplers.corruption import uniform_sampler
from dhns.seeding import seeded
from dhns.training.checkpoint import load_diffusion, load_kge
from dhns.training.kgc import sampled_loss

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--triples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "probes")
    args = parser.parse_args()
    params = params_from_dict(yaml.safe_load((args.run / "params.yaml").read_text()))
    prepared = args.run / "artifacts" / "prepared"
    kg = KnowledgeGraph.load(prepared)
    vocabulary = kg.vocabulary()
    model, _ = load_kge(args.run / "artifacts" / "pretrain" / "model.pt", "cpu", vocabulary,
                        prepared)
    diffusion, _ = load_diffusion(args.run / "artifacts" / "diffusion" / "model.pt", "cpu",
                              vocabulary, prepared)
    cfg = params.retrain
    gen = seeded(params.seed, 70)
    ntat = ntat_from_params(params, diffusion, gen)  # the retrain stage's own NTAT term
    hier = ntat.hierarchy
    pick = torch.randperm(len(kg.train), generator=gen)[:args.triples]
    batch = kg.train[pick]
    negatives = hier.generate(model, batch, gen)
    index = FilterIndex(kg.all_triples(), kg.num_relations)
    levels = [f"t={t}" for t in hier.levels]
    report: dict = {"dataset": kg.name, "seed": params.seed, "triples": len(batch),
                    "level_steps": hier.levels}

    with torch.no_grad():  # 1. the margins' effect on the generated tails' loss
        e_h, r, _, _, t_hat = embed_with_generated(model, negatives)
        scorer = model.scorer
        neg = scorer.score(e_h[None], r[None], t_hat)  # (L, B)
        shift = (torch.tensor(cfg.level_margins)[:, None] - 1.0) * scorer.gamma
        ranks, _ = generated_ranks(model, batch[:, 0], batch[:, 1], t_hat, "tail", index)
        report["tail_loss"] = {
            level: {"with_margin": round(float(-F.logsigmoid(-(neg[k] + shift[k])).mean()), 4),
                    "without_margin": round(float(-F.logsigmoid(-neg[k]).mean()), 4),
                    "above_best_wrong": round(float((ranks[k] == 1).double().mean()), 4)}
            for k, level in enumerate(levels)}
    ordinary = uniform_sampler(kg.num_entities, params.kge.num_negatives)
    kgc = sampled_loss(ordinary, params.kge.adversarial_temperature, gen)
    size = cfg.batch_size
    batches = [kg.train[pick[i:i + size]] for i in range(0, min(len(pick), 4 * size), size)]
    report["loss_gradients"] = loss_gradient_report(model, batches, kgc, ntat, gen)  # 2.
    report["coverage_per_epoch"] = round(cfg.generate_fraction / cfg.refresh_every, 4)  # 3.
    abar = diffusion.schedule.alpha_bars  # 5.
    report["alpha_bar"] = {level: round(float(abar[t]), 4)
                           for level, t in zip(levels, hier.levels, strict=True)}
    report.update(real_entity_diagnostics(model, hier.levels, negatives, index))  # 6.
    report["params"] = to_dict(params)
    atomic_write_json(args.out / f"{kg.name}-seed{params.seed}.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "params"}, indent=1))


if __name__ == "__main__":
    main()
