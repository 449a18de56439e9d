"""Training and ranking at 10^4 to 10^6 entities: triples/s, queries/s and peak memory.

Usage::

    OMP_NUM_THREADS=2 python -m bench.scale --out results/bench_scale.json \
        [--sizes 10000 100000 1000000] [--modes dense sparse] [--steps 20]

Each (size, mode) runs in its own process, so its peak resident memory (``ru_maxrss``) is its
own. The graph is random with planted structure: about ``--triples-per-entity`` triples per
entity over 50 relations, tail = a relation-specific affine map of the head plus a little
noise. The model is the benchmark's: RotatE d = 250 (500 reals per entity), structure only,
64 uniform negatives shared by chunks of 64 positives, batch 1024, fused scoring. Training is
:class:`dhns.training.trainer.Trainer` itself, two epochs of ``--steps`` batches, the second
timed, with dense Adam (``dense``) or lazy row updates
of the entity table (``sparse``: ``kge.sparse_updates``). Ranking is
:func:`dhns.evaluation.evaluate`, filtered, both sides, against every entity, on
``--queries`` test triples, within the evaluator's default score budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dhns.evaluation import FilterIndex, evaluate
from dhns.io import atomic_write_json
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.samplers.corruption import uniform_sampler
from dhns.training.kgc import sampled_loss
from dhns.training.trainer import Trainer

RELATIONS = 50
DIM, GAMMA, NEGATIVES, CHUNK, BATCH, LR = 250, 6.0, 64, 64, 1024, 1e-3


def random_graph(num_entities: int, per_entity: float, seed: int) -> torch.Tensor:
    """``(n, 3)`` distinct triples, ``n`` about ``per_entity * num_entities``."""
    rng = np.random.default_rng(seed)
    n = int(per_entity * num_entities)
    heads = rng.integers(num_entities, size=n)
    rels = rng.integers(RELATIONS, size=n)
    scale = rng.integers(1, 1000, size=RELATIONS) * 2 + 1
    shift = rng.integers(num_entities, size=RELATIONS)
    tails = (heads * scale[rels] + shift[rels] + rng.integers(-3, 4, size=n)) % num_entities
    keys = np.unique((heads * RELATIONS + rels) * num_entities + tails)
    triples = np.stack([keys // num_entities // RELATIONS, keys // num_entities % RELATIONS,
                        keys % num_entities], axis=1)
    return torch.from_numpy(triples[rng.permutation(len(triples))])


def recipe_model(num_entities: int, num_relations: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> MultimodalKGE:
    """The benchmark recipe's KGE: RotatE d = 250, structure only, fused scoring."""
    model = MultimodalKGE(KGEModelConfig("rotate", DIM, GAMMA, num_entities, num_relations),
                          generator=generator).to(device)
    model.scorer.fuse()
    return model


def second_epoch_seconds(model: MultimodalKGE, train: torch.Tensor, generator: torch.Generator,
                         sparse: bool = False) -> float:
    """Train two epochs over ``train`` with :class:`Trainer` (64 uniform negatives shared by
    chunks of 64, batch 1024) and return the second's seconds: the first compiles the kernels
    and allocates Adam's moments (two (N, D) tables, seconds at 10^6 entities)."""
    sampler = uniform_sampler(model.config.num_entities, NEGATIVES, CHUNK)
    trainer = Trainer(model, train, sampled_loss(sampler, 1.0, generator), epochs=2,
                      batch_size=BATCH, lr=LR, generator=generator, progress=False,
                      log=lambda _m: None, sparse_updates=sparse)
    return trainer.fit().history[1]["seconds"]


def measure(num_entities: int, mode: str, args: argparse.Namespace) -> dict:
    """One (size, mode) cell, in this process."""
    start = time.perf_counter()
    triples = random_graph(num_entities, args.triples_per_entity, args.seed)
    test, train = triples[:args.queries], triples[args.queries:]
    built = time.perf_counter() - start
    gen = torch.Generator().manual_seed(args.seed)
    model = recipe_model(num_entities, RELATIONS, gen)
    # --steps batches (fewer on a graph too small for them).
    order = torch.randperm(len(train), generator=gen)[:args.steps * BATCH]
    seconds = second_epoch_seconds(model, train[order], gen, sparse=mode == "sparse")
    began = time.perf_counter()
    filt = FilterIndex(triples, RELATIONS)
    filter_seconds = time.perf_counter() - began
    evaluate(model.link_predictor(), test[:2], filt, num_entities, progress=False)  # compile
    began = time.perf_counter()
    mrr = evaluate(model.link_predictor(), test, filt, num_entities, progress=False)["mrr"]
    rank_seconds = time.perf_counter() - began
    return {
        "entities": num_entities, "mode": mode, "triples": len(triples),
        "graph_seconds": round(built, 2),
        "train_triples_per_s": round(len(order) / seconds, 1),
        "step_ms": round(1000 * seconds / -(-len(order) // BATCH), 1),
        "filter_index_seconds": round(filter_seconds, 2),
        "rank_queries_per_s": round(2 * len(test) / rank_seconds, 1),
        "test_mrr_after_steps": round(mrr, 4),
        # Linux reports kilobytes.
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", choices=["dense", "sparse"],
                        default=["dense", "sparse"])
    parser.add_argument("--triples-per-entity", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=20, help="timed training batches")
    parser.add_argument("--queries", type=int, default=64, help="test triples ranked")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench_scale.json"))
    parser.add_argument("--cell", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:  # a child: one cell, its JSON on stdout
        print(json.dumps(measure(int(args.cell[0]), args.cell[1], args)))
        return
    forwarded = [f"--triples-per-entity={args.triples_per_entity}", f"--steps={args.steps}",
                 f"--queries={args.queries}", f"--seed={args.seed}"]
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            print(f"scale: {size} entities, {mode} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, "-m", "bench.scale", "--cell", str(size), mode,
                                  *forwarded], check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    atomic_write_json(args.out, {
        "command": "python -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_before": os.getloadavg()},
        "rows": rows})
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """The README's table."""
    lines = ["| entities | updates | train triples/s | step | rank queries/s | peak RSS |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['entities']:,} | {r['mode']} | {r['train_triples_per_s']:,.0f} | "
                     f"{r['step_ms']:.0f} ms | {r['rank_queries_per_s']:,.1f} | "
                     f"{r['peak_rss_gib']:.1f} GiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
