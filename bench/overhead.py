"""DHNS overhead: a retrain step with generated negatives against a uniform step, interleaved.

Usage (from a project folder whose pipeline has run at least up to the diffusion stage)::

    python -m bench.overhead [--rounds 4] [--steps 12] [--out results/bench_overhead.json]

Two copies of the pretrained checkpoint train side by side on the same batches: ``uniform``
(the self-adversarial loss, as the ``uniform`` stage) and ``dhns`` (plus NTAT's ``lambda L_HA``
built by ``dhns.negatives.ntat.ntat_from_params`` from ``params.yaml``, as the ``retrain``
stage builds it). They alternate in rounds of ``--steps`` steps so that both see the same
machine load; the first round warms up
(compilation, allocator) and is not counted. The retrain stage's ``epoch_time_vs_uniform``
(``reports/retrain.json``) compares two stages run at different times, which on a shared
machine says more about the load than about DHNS; this does not.

Reported per step and per epoch-equivalent (steps per epoch x seconds per step): the ratio
dhns / uniform and DHNS's split into generation (the denoiser chain), scoring the generated
negatives (L_HA forward), the rest of the forward pass, backward and the optimizer step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dhns.config import Params, load_params
from dhns.io import atomic_write_json
from dhns.kge.build import compile_scoring
from dhns.kge.model import MultimodalKGE
from dhns.negatives import NTATLoss
from dhns.optim import adam
from dhns.samplers import SamplerContext, build_sampler, sampler_options
from dhns.training.kgc import sampled_loss, sparse_updates, with_extra_loss

PARTS = ("forward", "backward", "optimizer")


def _time_steps(model: MultimodalKGE, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                batches: list[Tensor], first_step: int) -> dict[str, float]:
    """Seconds spent in forward (loss), backward and optimizer over ``batches``."""
    spent = dict.fromkeys(PARTS, 0.0)
    model.train()
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss, _ = loss_fn(model, batch, first_step + i)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        spent["forward"] += t1 - t0
        spent["backward"] += t2 - t1
        spent["optimizer"] += t3 - t2
    return spent


def measure_overhead(load_model: Callable[[], MultimodalKGE], ntat: NTATLoss,
                     train: Tensor, params: Params, *, rounds: int, steps: int,
                     seed: int = 0) -> dict:
    """Interleaved uniform / DHNS training steps; the first of ``rounds`` is warm-up.

    Args:
        load_model: returns a fresh copy of the starting KGE (called twice).
        ntat: the DHNS loss term, as the retrain stage builds it
            (``dhns.negatives.ntat.ntat_from_params``).
        train: (N, 3) training triples; batches of ``params.retrain.batch_size`` are drawn
            from one fixed permutation, the same for both runs.
        params: ``kge`` and ``retrain`` settings (negatives, batch size, learning rate).
    Returns:
        per-step seconds of both runs, their ratio, DHNS's split, and epoch equivalents.
    """
    if rounds < 2 or steps < 1:
        raise ValueError("need rounds >= 2 (the first warms up) and steps >= 1")
    cfg = params.retrain
    models = {"uniform": load_model(), "dhns": load_model()}
    num_entities = models["uniform"].config.num_entities
    num_relations = models["uniform"].config.num_relations
    losses, optimizers = {}, {}
    sparse = sparse_updates(params.kge, num_entities)  # as the stages' Trainer does
    for name, model in models.items():
        model.sparse_gradients = sparse
        context = SamplerContext(num_entities, num_relations, train)
        sampler = build_sampler(params.kge.negative_sampler, context, params.kge.num_negatives,
                                sampler_options(params.kge))
        base = sampled_loss(sampler, params.kge.adversarial_temperature,
                            torch.Generator().manual_seed(seed))
        optimizers[name] = adam(model.parameters(), lr=cfg.lr, sparse_rows=sparse)
        losses[name] = base if name == "uniform" else with_extra_loss(base, ntat)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    size = cfg.batch_size
    steps_per_epoch = math.ceil(len(train) / size)
    totals = {name: dict.fromkeys(PARTS, 0.0) for name in models}
    ntat_before: dict[str, float] = {}
    loads = []
    for r in range(rounds):
        batches = []
        for i in range(r * steps, (r + 1) * steps):
            j = i % steps_per_epoch
            batches.append(train[order[j * size:(j + 1) * size]])
        if r == 0 and len(train) % size:
            # The epoch's short last batch makes torch.compile rebuild its kernels for dynamic
            # shapes. Left to a counted round, that compilation (seconds) lands in whichever
            # run meets the short batch first; a real run pays it once, in its first epoch.
            batches.append(train[order[(steps_per_epoch - 1) * size:]])
        if r == 1:  # warm-up done: count NTAT's own timers from here
            ntat_before = dict(ntat.seconds)
        for name in (("uniform", "dhns") if r % 2 == 0 else ("dhns", "uniform")):
            spent = _time_steps(models[name], losses[name], optimizers[name], batches, r * steps)
            if r > 0:
                for part in PARTS:
                    totals[name][part] += spent[part]
        loads.append(os.getloadavg()[0])
    counted = (rounds - 1) * steps
    per_step = {name: {part: v / counted for part, v in parts.items()}
                for name, parts in totals.items()}
    total = {name: sum(parts.values()) for name, parts in per_step.items()}
    generate = (ntat.seconds["generate"] - ntat_before["generate"]) / counted
    score = (ntat.seconds["score"] - ntat_before["score"]) / counted
    dhns = per_step["dhns"]
    split = {"generate": generate, "score_generated": score,
             "rest_of_forward": dhns["forward"] - generate - score,
             "backward": dhns["backward"], "optimizer": dhns["optimizer"]}
    return {
        "sparse_updates": sparse,
        "steps_counted": counted,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_step": {name: round(v, 5) for name, v in total.items()},
        "seconds_per_epoch": {name: round(v * steps_per_epoch, 3) for name, v in total.items()},
        "dhns_vs_uniform": round(total["dhns"] / total["uniform"], 3),
        "uniform_split_per_epoch": {k: round(v * steps_per_epoch, 3)
                                    for k, v in per_step["uniform"].items()},
        "dhns_split_per_epoch": {k: round(v * steps_per_epoch, 3) for k, v in split.items()},
        "loadavg_per_round": [round(v, 2) for v in loads],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--checkpoint", type=Path, default=Path("artifacts/pretrain/model.pt"))
    parser.add_argument("--diffusion", type=Path, default=Path("artifacts/diffusion/model.pt"))
    parser.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    parser.add_argument("--rounds", type=int, default=4, help="including one warm-up round")
    parser.add_argument("--steps", type=int, default=12, help="steps per run and round")
    parser.add_argument("--out", type=Path, default=Path("results/bench_overhead.json"))
    args = parser.parse_args(argv)
    # Imported here: reading checkpoints is the pipeline's format, not the measurement's.
    from dhns.data import KnowledgeGraph
    from dhns.device import resolve_device
    from dhns.negatives.ntat import ntat_from_params
    from dhns.training.checkpoint import load_diffusion, load_kge

    for path in (args.params, args.checkpoint, args.diffusion, args.prepared):
        if not path.exists():
            raise SystemExit(f"{path}: not found (run the pipeline up to the diffusion stage, "
                             "or point --params/--checkpoint/--diffusion/--prepared at one)")
    from dhns.errors import UserError

    try:
        params = load_params(args.params)
    except UserError as exc:  # a bad params file is the user's: one line, no traceback
        raise SystemExit(str(exc)) from None
    device = resolve_device(params.device)
    kg = KnowledgeGraph.load(args.prepared)
    vocabulary = kg.vocabulary()

    def load_model() -> MultimodalKGE:
        model, _ = load_kge(args.checkpoint, device, vocabulary, args.prepared)
        compile_scoring(model, params.kge.compile, device)
        return model

    diffusion, _ = load_diffusion(args.diffusion, device, vocabulary, args.prepared)
    ntat = ntat_from_params(params, diffusion, torch.Generator().manual_seed(params.seed + 1))
    result = measure_overhead(load_model, ntat, kg.train.to(device), params,
                              rounds=args.rounds, steps=args.steps, seed=params.seed)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.overhead " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": kg.name,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {"schedule": params.model.schedule, "steps": params.model.steps,
                     "sampling_steps": ntat.hierarchy.sampling_steps,
                     "generate_fraction": ntat.generate_fraction,
                     "refresh_every": ntat.refresh_every,
                     "ha_weighting": params.retrain.ha_weighting,
                     "batch_size": params.retrain.batch_size,
                     "num_negatives": params.kge.num_negatives},
        **result,
    }
    atomic_write_json(args.out, result)
    print(f"{kg.name}: dhns {result['seconds_per_epoch']['dhns']} s/epoch against uniform "
          f"{result['seconds_per_epoch']['uniform']} s/epoch = {result['dhns_vs_uniform']}x; "
          f"dhns split per epoch {result['dhns_split_per_epoch']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
