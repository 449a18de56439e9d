"""Training and link-prediction throughput of dhns against PyKEEN, on CPU.

Usage::

    python -m bench.throughput --dataset-dir ../shared/data/DB15K \
        --out results/bench_throughput.json [--batches 20] [--skip-pykeen]

Each measurement is short (a bounded number of batches / test triples) and per-epoch times are
extrapolated from triples/s. The systems run interleaved in rounds (the order rotates every
round) so that on a shared, loaded machine they all see the same load; ``os.getloadavg()`` is
recorded before, during (once per round) and after.

Training (RotatE, structure only, self-adversarial loss, Adam): one step = sample negatives,
loss, backward, Adam step, exactly as :class:`dhns.training.trainer.Trainer` with
:func:`dhns.training.kgc.sampled_loss`. PyKEEN's ``SLCWATrainingLoop`` is timed from the end of
its first batch to the end of its last one of each call (so model reset and data-loader start-up
are excluded, while its per-batch loading and negative sampling are included, like ours).

Evaluation: filtered ranking of both sides against all entities, one ``evaluate()`` /
``RankBasedEvaluator.evaluate()`` call per round, filter set-up included for both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dhns.data import KnowledgeGraph, load_dataset
from dhns.evaluation import FilterIndex, evaluate
from dhns.io import atomic_write_json
from dhns.kge.loss import kge_loss, score_with_negatives
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.kge.scoring import RotatE
from dhns.optim import adam
from dhns.samplers.corruption import uniform_sampler


@dataclass
class BenchConfig:
    dim: int = 250  # complex dimension: entities are 2 * dim reals
    gamma: float = 6.0  # our margin == PyKEEN's NSSALoss margin
    temperature: float = 1.0
    num_negatives: int = 64
    chunk_size: int = 64  # ours: negatives shared by chunks of this many positives
    batch_size: int = 1024
    lr: float = 1e-3
    batches: int = 20  # timed training batches per system (split over the rounds)
    rounds: int = 10  # interleaving rounds (more, shorter rounds: fairer under bursty load)
    eval_triples: int = 500  # test triples ranked per system (split over the rounds)
    eval_batch_size: int = 256
    bf16: bool = False  # also measure the bf16-distance variant (eager; measured slower)
    seed: int = 0


# -- timing helpers ----------------------------------------------------------------------------
@dataclass
class Timing:
    """Accumulated timed work of one system over all rounds."""

    triples: int = 0
    seconds: float = 0.0
    per_round: list[float] = field(default_factory=list)  # triples/s of each round

    def add(self, triples: int, seconds: float) -> None:
        self.triples += triples
        self.seconds += seconds
        self.per_round.append(triples / seconds)

    @property
    def triples_per_s(self) -> float:
        return self.triples / self.seconds if self.seconds > 0 else float("nan")


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def _rotated(items: list[Any], offset: int) -> list[Any]:
    k = offset % len(items)
    return items[k:] + items[:k]


# -- ours ---------------------------------------------------------------------------------------
class Bf16RotatE(RotatE):
    """RotatE whose big ``(C, S, K, D)`` distance runs in bf16 (benchmark only).

    CPU autocast does not cover elementwise ops (sub, hypot), so the inputs of ``match`` are
    cast explicitly; the sum over ``D`` accumulates into fp32 so scores keep fp32 resolution.
    Not ``hypot``: bf16 rounding makes both differences exactly 0 for thousands of elements
    per batch, where hypot's gradient is 0/0 = NaN (the weights are NaN after one step).
    """

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        q_re, q_im = query.to(torch.bfloat16).chunk(2, dim=-1)
        c_re, c_im = candidate.to(torch.bfloat16).chunk(2, dim=-1)
        dx, dy = q_re - c_re, q_im - c_im
        dist = torch.sqrt(dx * dx + dy * dy + 1e-30).sum(dim=-1, dtype=torch.float32)
        return self.gamma - dist


class OursTrainer:
    """A model, its Adam and its sampler; :meth:`step` is one Trainer step."""

    def __init__(self, kg: KnowledgeGraph, cfg: BenchConfig, bf16: bool = False,
                 fused: bool = True) -> None:
        gen = torch.Generator().manual_seed(cfg.seed)
        mcfg = KGEModelConfig(model="rotate", dim=cfg.dim, gamma=cfg.gamma,
                              num_entities=kg.num_entities, num_relations=kg.num_relations)
        self.model = MultimodalKGE(mcfg, generator=gen)
        if bf16:
            self.model.scorer = Bf16RotatE(cfg.dim, cfg.gamma)
        elif fused:  # what the pipeline does with kge.compile: true (the default)
            self.model.scorer.fuse()
        self.optimizer = adam(self.model.parameters(), lr=cfg.lr)
        self.sampler = uniform_sampler(kg.num_entities, cfg.num_negatives, cfg.chunk_size)
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.temperature = cfg.temperature
        self.train = kg.train
        self.batch_size = cfg.batch_size
        self.order = torch.randperm(len(kg.train), generator=self.generator)
        self.cursor = 0
        self.last_loss = float("nan")

    def next_batch(self) -> Tensor:
        if self.cursor + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.train), generator=self.generator)
            self.cursor = 0
        idx = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return self.train[idx]

    def step(self) -> float:
        batch = self.next_batch()
        loss = kge_loss(self.model, batch, self.sampler.sample(batch, self.generator),
                        self.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def run(self, n: int) -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(n):
            self.last_loss = self.step()
        return n * self.batch_size, time.perf_counter() - start


def bf16_loss_check(kg: KnowledgeGraph, cfg: BenchConfig) -> dict[str, float]:
    """fp32 vs bf16 loss and gradient on the same weights, batch and negatives."""
    trainer = OursTrainer(kg, cfg)
    model = trainer.model
    batch = trainer.next_batch()
    negatives = trainer.sampler.sample(batch, trainer.generator)
    out = {}
    for name, scorer in (("fp32", model.scorer), ("bf16", Bf16RotatE(cfg.dim, cfg.gamma))):
        model.scorer = scorer
        model.zero_grad(set_to_none=True)
        loss = kge_loss(model, batch, negatives, cfg.temperature)
        loss.backward()
        out[name] = (loss.item(), model.entity.grad.clone())
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    # Scores: how far bf16 moves the positive scores (in margin units).
    with torch.no_grad():
        model.scorer = RotatE(cfg.dim, cfg.gamma)
        pos32 = score_with_negatives(model, batch, negatives)[0]
        model.scorer = Bf16RotatE(cfg.dim, cfg.gamma)
        pos16 = score_with_negatives(model, batch, negatives)[0]
    cos = torch.nn.functional.cosine_similarity(g32.double().flatten(), g16.double().flatten(),
                                                dim=0)
    return {
        "grad_nonfinite_fp32": int((~g32.isfinite()).sum()),
        "grad_nonfinite_bf16": int((~g16.isfinite()).sum()),
        "loss_fp32": l32,
        "loss_bf16": l16,
        "loss_abs_diff": abs(l32 - l16),
        "loss_rel_diff": abs(l32 - l16) / abs(l32),
        "entity_grad_cosine": float(cos),
        "entity_grad_rel_norm_diff": float((g32 - g16).norm() / g32.norm()),
        "pos_score_max_abs_diff": float((pos32 - pos16).abs().max()),
    }


# -- PyKEEN -------------------------------------------------------------------------------------
def pykeen_available() -> str | None:
    """PyKEEN's version, or ``None`` when it cannot be imported."""
    try:
        from pykeen.version import get_version
    except ImportError:
        return None
    return get_version()


class PyKEENTrainer:
    """RotatE + NSSALoss + BasicNegativeSampler in an ``SLCWATrainingLoop``.

    Each :meth:`run` trains one epoch on a fresh random subset of ``n + 1`` batches of the
    training triples and returns the time of ``n`` of them (start of batch 1 to start of
    batch ``n + 1``).
    """

    def __init__(self, kg: KnowledgeGraph, cfg: BenchConfig) -> None:
        from pykeen.losses import NSSALoss
        from pykeen.models import RotatE as PKRotatE
        from pykeen.sampling import BasicNegativeSampler
        from pykeen.training import SLCWATrainingLoop
        from pykeen.training.callbacks import TrainingCallback
        from pykeen.triples import CoreTriplesFactory

        self.kg = kg
        self.cfg = cfg
        self.factory = CoreTriplesFactory.create(kg.train, num_entities=kg.num_entities,
                                                 num_relations=kg.num_relations)
        self.model = PKRotatE(
            triples_factory=self.factory, embedding_dim=cfg.dim,
            loss=NSSALoss(margin=cfg.gamma, adversarial_temperature=cfg.temperature),
            random_seed=cfg.seed,
        )
        self.loop = SLCWATrainingLoop(
            model=self.model, triples_factory=self.factory,
            optimizer=adam(self.model.get_grad_params(), lr=cfg.lr),
            negative_sampler=BasicNegativeSampler,
            negative_sampler_kwargs={"num_negs_per_pos": cfg.num_negatives},
        )
        stamps: list[float] = []
        self.stamps = stamps

        class Stamp(TrainingCallback):
            # pre_batch: the batch is loaded (and its negatives sampled) and the previous
            # optimizer step is done (PyKEEN steps in a callback registered after this one).
            def pre_batch(self, **kwargs: Any) -> None:
                stamps.append(time.perf_counter())

        self.callback = Stamp()
        self.generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.trained = False

    def run(self, n: int) -> tuple[int, float]:
        from pykeen.triples import CoreTriplesFactory

        size = min((n + 1) * self.cfg.batch_size, len(self.kg.train))
        pick = torch.randperm(len(self.kg.train), generator=self.generator)[:size]
        subset = CoreTriplesFactory.create(self.kg.train[pick], num_entities=self.kg.num_entities,
                                           num_relations=self.kg.num_relations)
        self.stamps.clear()
        with warnings.catch_warnings():  # PyKEEN-internal noise: pin_memory on CPU, shuffle
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            warnings.filterwarnings("ignore", message="Training instances are always shuffled")
            # One more epoch (continuing counts epochs from the previous call).
            self.loop.train(triples_factory=subset, num_epochs=self.loop._epoch + 1,
                            batch_size=self.cfg.batch_size, use_tqdm=False,
                            callbacks=self.callback, pin_memory=False,
                            continue_training=self.trained, drop_last=True)
        self.trained = True
        # Stamps at the start of batches 1..n+1: n intervals, each one full batch (compute,
        # step, loading + sampling the next). A run(n) must thus cover n + 1 batches.
        timed = len(self.stamps) - 1
        return timed * self.cfg.batch_size, self.stamps[-1] - self.stamps[0]


# -- evaluation ---------------------------------------------------------------------------------
def ours_eval(model: MultimodalKGE, kg: KnowledgeGraph, cfg: BenchConfig
              ) -> Callable[[Tensor], tuple[int, float]]:
    def run(triples: Tensor) -> tuple[int, float]:
        start = time.perf_counter()
        index = FilterIndex(kg.all_triples(), kg.num_relations)
        evaluate(model.link_predictor(), triples, index, kg.num_entities,
                 batch_size=cfg.eval_batch_size, progress=False)
        return len(triples), time.perf_counter() - start

    return run


def pykeen_eval(model: Any, kg: KnowledgeGraph, cfg: BenchConfig
                ) -> Callable[[Tensor], tuple[int, float]]:
    from pykeen.evaluation import RankBasedEvaluator

    # Its per-call "tensors on cpu ... not considered safe for memory maximization" warning.
    logging.getLogger("torch_max_mem").setLevel(logging.ERROR)

    def run(triples: Tensor) -> tuple[int, float]:
        start = time.perf_counter()
        model.eval()
        RankBasedEvaluator(filtered=True).evaluate(
            model, triples, batch_size=cfg.eval_batch_size, use_tqdm=False,
            additional_filter_triples=[kg.train, kg.valid, kg.test],
        )
        return len(triples), time.perf_counter() - start

    return run


# -- the benchmark ------------------------------------------------------------------------------
def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal positive integers (fewer parts if total is small)."""
    parts = max(1, min(parts, total))
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_benchmark(kg: KnowledgeGraph, cfg: BenchConfig, use_pykeen: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    pk_version = pykeen_available() if use_pykeen else None
    if use_pykeen and pk_version is None:
        log("PyKEEN is not importable: measuring dhns only")
    loads: list[dict[str, Any]] = [{"when": "before", "loadavg": _loadavg()}]

    # --- training ---
    trainers: dict[str, Any] = {"ours_fused": OursTrainer(kg, cfg),
                                "ours_eager": OursTrainer(kg, cfg, fused=False)}
    if cfg.bf16:
        trainers["ours_bf16"] = OursTrainer(kg, cfg, bf16=True)
    if pk_version is not None:
        trainers["pykeen"] = PyKEENTrainer(kg, cfg)
    for name, trainer in trainers.items():  # warm-up (allocator, first-call overheads)
        trainer.run(1)
        log(f"warm-up {name} done")
    train_timing = {name: Timing() for name in trainers}
    for i, n in enumerate(_split(cfg.batches, cfg.rounds)):
        for name in _rotated(list(trainers), i):
            train_timing[name].add(*trainers[name].run(n))
        loads.append({"when": f"train round {i + 1}", "loadavg": _loadavg()})
        log(f"train round {i + 1}: " + ", ".join(
            f"{k} {t.per_round[-1]:.0f}/s" for k, t in train_timing.items()))
    bf16_check = bf16_loss_check(kg, cfg) if cfg.bf16 else None

    # --- evaluation (the trained models; random weights would do: throughput only) ---
    test = kg.test[torch.randperm(len(kg.test), generator=torch.Generator().manual_seed(cfg.seed))]
    test = test[:cfg.eval_triples]
    evaluators = {"ours_fused": ours_eval(trainers["ours_fused"].model, kg, cfg),
                  "ours_eager": ours_eval(trainers["ours_eager"].model, kg, cfg)}
    if pk_version is not None:
        evaluators["pykeen"] = pykeen_eval(trainers["pykeen"].model, kg, cfg)
    for run in evaluators.values():  # warm-up
        run(test[:min(8, len(test))])
    eval_timing = {name: Timing() for name in evaluators}
    start = 0
    for i, n in enumerate(_split(len(test), cfg.rounds)):
        part = test[start:start + n]
        start += n
        for name in _rotated(list(evaluators), i):
            eval_timing[name].add(*evaluators[name](part))
        loads.append({"when": f"eval round {i + 1}", "loadavg": _loadavg()})
        log(f"eval round {i + 1}: " + ", ".join(
            f"{k} {t.per_round[-1]:.0f}/s" for k, t in eval_timing.items()))
    loads.append({"when": "after", "loadavg": _loadavg()})

    # --- report ---
    n_train, n_test = len(kg.train), len(kg.test)

    def entry(t: Timing, per_epoch: int, ref: Timing | None) -> dict[str, Any]:
        tps = t.triples_per_s
        return {
            "triples_per_s": round(tps, 2),
            "seconds_per_epoch": round(per_epoch / tps, 2),
            "timed_triples": t.triples,
            "timed_seconds": round(t.seconds, 3),
            "median_round_triples_per_s": round(statistics.median(t.per_round), 2),
            "triples_per_s_per_round": [round(x, 2) for x in t.per_round],
            "ratio_ours_over_pykeen": (round(tps / ref.triples_per_s, 3)
                                       if ref is not None else None),
        }

    pk_train = train_timing.get("pykeen")
    pk_eval = eval_timing.get("pykeen")
    training = {}
    for name, t in train_timing.items():
        training[name] = entry(t, n_train, None if name == "pykeen" else pk_train)
    for name, trainer in trainers.items():
        if isinstance(trainer, OursTrainer):  # finite: the timed steps did real work
            training[name]["last_loss"] = round(trainer.last_loss, 6)
    if bf16_check is not None:
        training["ours_bf16"]["loss_check"] = bf16_check
    evaluation = {name: entry(t, n_test, None if name == "pykeen" else pk_eval)
                  for name, t in eval_timing.items()}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "pykeen_version": pk_version,
        "dataset": {"name": kg.name, "entities": kg.num_entities,
                    "relations": kg.num_relations, "train": n_train,
                    "valid": len(kg.valid), "test": n_test},
        "config": {**cfg.__dict__},
        "loadavg": {"before": loads[0]["loadavg"], "after": loads[-1]["loadavg"],
                    "samples": loads},
        "training": training,
        "evaluation": evaluation,
        "notes": NOTES,
    }


NOTES = {
    "epoch": "seconds_per_epoch is extrapolated: training triples (resp. test triples, both "
             "sides) / measured triples/s.",
    "ratio": "ratio_ours_over_pykeen = our triples/s / PyKEEN's (> 1: dhns faster).",
    "negatives": "both: 64 negatives per positive, each positive corrupting its head or its "
                 "tail (uniformly at random). Ours draws the candidate ids once per chunk of 64 "
                 "positives (shared); PyKEEN's BasicNegativeSampler draws them per positive.",
    "optimizer": "both: Adam lr 1e-3 with the single-kernel update (fused=True), the one "
                 "dhns.optim.adam builds for every dhns training loop.",
    "fused": "ours_fused: the pipeline default (kge.compile: true), RotatE all-pairs distance "
             "and its backward as torch.compile kernels (dhns/kge/fused.py); ours_eager: "
             "kge.compile: false (broadcast PyTorch ops).",
    "models": "ours: RotatE with modulus-free phase relations, uniform init, no constraint; "
              "PyKEEN RotatE: complex-normalised relations (constrainer after each step).",
    "pykeen_timing": "SLCWATrainingLoop.train(num_epochs=1) on a random (n+1)*batch subset, "
                     "timed between the end of its first and last batch (post_batch callback).",
    "bf16": "ours_bf16 casts the query/candidate tensors of the RotatE distance to bf16 (CPU "
            "autocast does not cover elementwise ops) and sums into fp32; benchmark only.",
    "evaluation": "filtered (train+valid+test), both sides, all entities; the filter index "
                  "build is inside the timed call for both systems.",
}


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The README table: one row per measurement."""

    def fmt(x: float | None, nd: int = 0) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{nd}f}"

    rows = ["| measurement | dhns triples/s | dhns s/epoch | PyKEEN triples/s | "
            "PyKEEN s/epoch | dhns/PyKEEN |", "|---|---:|---:|---:|---:|---:|"]
    tr, ev = result["training"], result["evaluation"]
    pk_tr, pk_ev = tr.get("pykeen"), ev.get("pykeen")
    labels = {"ours_fused": "train RotatE d=250, 64 neg, fused (default)",
              "ours_eager": "train RotatE d=250, 64 neg, eager (kge.compile false)",
              "ours_bf16": "train RotatE d=250, 64 neg, eager, bf16 distance"}
    for name, label in labels.items():
        if name in tr:
            rows.append(_row(label, tr[name], pk_tr, fmt))
    eval_labels = {"ours_fused": "link prediction (filtered, both sides), fused (default)",
                   "ours_eager": "link prediction (filtered, both sides), eager"}
    for name, label in eval_labels.items():
        if name in ev:
            rows.append(_row(label, ev[name], pk_ev, fmt))
    return "\n".join(rows)


def _row(label: str, ours: dict, ref: dict | None, fmt: Callable[..., str]) -> str:
    ratio = ours.get("ratio_ours_over_pykeen")
    return (f"| {label} | {fmt(ours['triples_per_s'])} | {fmt(ours['seconds_per_epoch'], 1)} | "
            f"{fmt(ref['triples_per_s'] if ref else None)} | "
            f"{fmt(ref['seconds_per_epoch'] if ref else None, 1)} | "
            f"{fmt(ratio, 2)}{'x' if ratio is not None else ''} |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split(
        "\n")[0])
    p.add_argument("--dataset-dir", required=True, type=Path, help="OpenKE or TSV layout folder")
    p.add_argument("--out", type=Path, default=Path("results/bench_throughput.json"))
    p.add_argument("--batches", type=int, default=BenchConfig.batches,
                   help="timed training batches per system")
    p.add_argument("--rounds", type=int, default=BenchConfig.rounds)
    p.add_argument("--eval-triples", type=int, default=BenchConfig.eval_triples)
    p.add_argument("--eval-batch-size", type=int, default=BenchConfig.eval_batch_size)
    p.add_argument("--dim", type=int, default=BenchConfig.dim)
    p.add_argument("--batch-size", type=int, default=BenchConfig.batch_size)
    p.add_argument("--num-negatives", type=int, default=BenchConfig.num_negatives)
    p.add_argument("--bf16", action="store_true", help="also time the bf16-distance variant")
    p.add_argument("--skip-pykeen", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = BenchConfig(dim=args.dim, batch_size=args.batch_size,
                      num_negatives=args.num_negatives, batches=args.batches,
                      rounds=args.rounds, eval_triples=args.eval_triples,
                      eval_batch_size=args.eval_batch_size, bf16=args.bf16,
                      seed=args.seed)
    torch.manual_seed(cfg.seed)
    kg, _ = load_dataset(args.dataset_dir)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = run_benchmark(kg, cfg, use_pykeen=not args.skip_pykeen, log=log)
    atomic_write_json(args.out, result)
    print(markdown_table(result))
    print(f"\nloadavg before {result['loadavg']['before']}, after {result['loadavg']['after']};"
          f" written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
