"""Epoch cost of each negative sampler against uniform, measured interleaved.

    python -m bench.sampler_cost --base ../base-mkgy0 [--rounds 3] [--steps 4]
        [--only nscaching,sans] [--out results/MKG-Y-sampler-cost.json]

One copy of ``--base``'s pretrained checkpoint per sampler, trained on the same batches
(``retrain.batch_size`` of the base params) with the self-adversarial loss over that sampler's
negatives, as the ``uniform`` stage would with ``-S kge.negative_sampler=NAME``. The samplers
take turns in rounds of ``--steps`` steps (order rotated each round) so that all see the same
machine load, as :mod:`bench.overhead` does for DHNS; the first round warms up (compilation,
caches, tables built on first use) and is not counted. One torch thread.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch
import yaml

from bench.overhead import PARTS, _time_steps
from dhns.config import params_from_dict
from dhns.data import KnowledgeGraph
from dhns.io import atomic_write_json
from dhns.kge.build import compile_scoring
from dhns.optim import adam
from dhns.samplers import SamplerContext, build_sampler, known_samplers, sampler_options
from dhns.training.checkpoint import load_kge
from dhns.training.kgc import sampled_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--rounds", type=int, default=3, help="including one warm-up round")
    parser.add_argument("--steps", type=int, default=4, help="steps per sampler and round")
    parser.add_argument("--only", help="comma-separated samplers (uniform is always in)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.rounds < 2 or args.steps < 1:
        raise SystemExit("need --rounds >= 2 (the first warms up) and --steps >= 1")
    torch.set_num_threads(1)
    params = params_from_dict(yaml.safe_load((args.base / "params.yaml").read_text()))
    kg = KnowledgeGraph.load(args.base / "artifacts" / "prepared")
    names = ["uniform"] + [n for n in (args.only.split(",") if args.only else known_samplers())
                           if n != "uniform"]
    context = SamplerContext(kg.num_entities, kg.num_relations, kg.train)
    runs = {}
    for name in names:
        model, _ = load_kge(args.base / "artifacts" / "pretrain" / "model.pt",
                            vocabulary=kg.vocabulary())
        compile_scoring(model, params.kge.compile, torch.device("cpu"))
        sampler = build_sampler(name, context, params.kge.num_negatives,
                                sampler_options(params.kge, name))
        loss = sampled_loss(sampler, params.kge.adversarial_temperature,
                            torch.Generator().manual_seed(0))
        runs[name] = (model, loss, adam(model.parameters(), lr=params.retrain.lr))
    size = params.retrain.batch_size
    order = torch.randperm(len(kg.train), generator=torch.Generator().manual_seed(0))
    steps_per_epoch = math.ceil(len(kg.train) / size)
    totals = {name: 0.0 for name in names}
    for r in range(args.rounds):
        batches = [kg.train[order[(i % steps_per_epoch) * size:(i % steps_per_epoch + 1) * size]]
                   for i in range(r * args.steps, (r + 1) * args.steps)]
        turn = names[r % len(names):] + names[:r % len(names)]
        for name in turn:
            spent = _time_steps(*runs[name], batches, r * args.steps)
            if r > 0:
                totals[name] += sum(spent[p] for p in PARTS)
        print(f"round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
    counted = (args.rounds - 1) * args.steps
    rows = {name: {"seconds_per_epoch": round(t / counted * steps_per_epoch, 2),
                   "vs_uniform": round(t / totals["uniform"], 2)} for name, t in totals.items()}
    print("| sampler | s/epoch (interleaved) | x uniform |")
    print("|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['seconds_per_epoch']} | {row['vs_uniform']}x |")
    if args.out:
        atomic_write_json(args.out, {"dataset": kg.name, "rounds": args.rounds,
                                     "steps": args.steps, "batch_size": size,
                                     "steps_per_epoch": steps_per_epoch, "rows": rows})


if __name__ == "__main__":
    main()
