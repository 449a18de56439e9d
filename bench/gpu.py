"""One training epoch and the test ranking of a benchmark on a device, against the CPU's ranks.

Usage (``bench/gpu.sh`` runs it, then the suite's CUDA tests)::

    python -m bench.gpu --dataset-dir ../shared/data/DB15K --out results/bench_gpu_DB15K.json \
        [--device cuda] [--cpu-check 500]

The benchmark recipe's model and training step, as :mod:`bench.scale` runs them
(:func:`~bench.scale.recipe_model`, :func:`~bench.scale.second_epoch_seconds`): one warm-up
epoch (compilation), then one timed epoch over the whole train split, then the filtered
ranking of the whole test split, both sides (:func:`dhns.evaluation.evaluate`), timed. The
same weights then rank the first ``--cpu-check`` test triples on the CPU too, and the file
records how many ranks agree (fp32 on both; a different reduction order may flip exact near-ties).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import torch

from bench.scale import recipe_model, second_epoch_seconds
from dhns.data import load_dataset
from dhns.evaluation import FilterIndex, evaluate
from dhns.evaluation.evaluator import rank_targets
from dhns.io import atomic_write_json
from dhns.kge.model import MultimodalKGE


def tail_ranks(model: MultimodalKGE, triples: torch.Tensor, index: FilterIndex) -> torch.Tensor:
    """Filtered optimistic tail ranks ``(n,)`` of ``triples`` on the model's device."""
    predictor = model.link_predictor()
    device = predictor.device
    h, r, t = triples.unbind(1)
    with torch.inference_mode():
        scores = predictor.score_tails(h.to(device), r.to(device)).float()
    rows, cols = index.answers(h, r, "tail")
    optimistic, _ = rank_targets(scores, t.to(device), rows.to(device), cols.to(device))
    return optimistic.cpu()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cpu-check", type=int, default=500,
                        help="test triples ranked on the CPU too (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench_gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: bench.gpu needs one (or --device cpu)")
    kg, _ = load_dataset(args.dataset_dir)
    gen = torch.Generator().manual_seed(args.seed)
    model = recipe_model(kg.num_entities, kg.num_relations, gen, device)
    epoch_seconds = second_epoch_seconds(model, kg.train, gen)
    index = FilterIndex(kg.all_triples(), kg.num_relations)
    evaluate(model.link_predictor(), kg.test[:2], index, kg.num_entities, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    metrics = evaluate(model.link_predictor(), kg.test, index, kg.num_entities, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rank_seconds = time.perf_counter() - began
    check: dict = {}
    if args.cpu_check:
        sample = kg.test[:args.cpu_check]
        here = tail_ranks(model, sample, index)
        cpu_model = MultimodalKGE(model.config, generator=torch.Generator().manual_seed(0))
        cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        cpu = tail_ranks(cpu_model, sample, index)
        check = {"triples": len(sample), "tail_ranks_equal": int((here == cpu).sum()),
                 "max_rank_difference": int((here - cpu).abs().max())}
    result = {
        "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "dataset": kg.name, "train_triples": len(kg.train),
        "epoch_seconds": round(epoch_seconds, 3),
        "train_triples_per_s": round(len(kg.train) / epoch_seconds, 1),
        "test_ranking_seconds": round(rank_seconds, 3),
        "rank_triples_per_s": round(len(kg.test) / rank_seconds, 1),  # both sides each
        "test_mrr_after_two_epochs": metrics["mrr"],
        "cpu_rank_check": check,
    }
    atomic_write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
