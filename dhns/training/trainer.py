"""A small, explicit training loop shared by pretrain and retrain.

All state lives on the :class:`Trainer` instance and the generator passed in (no globals),
so it can run under ``torchrun`` (:mod:`dhns.distributed`): every rank trains on its slice of
each batch and validates its shard of the queries; only rank 0 logs and shows progress.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dhns.distributed import (
    any_rank,
    average_gradients,
    broadcast,
    is_main_process,
    rank_and_world,
)
from dhns.errors import TrainingStopped
from dhns.kge.model import MultimodalKGE
from dhns.optim import adam, lr_multiplier
from dhns.training.resume import ResumeFile

# A loss term maps (model, batch (B, 3), step) to (scalar loss, stats for the log).
LossFn = Callable[[MultimodalKGE, Tensor, int], tuple[Tensor, dict[str, float]]]
Validate = Callable[[MultimodalKGE], float]


#: Consecutive steps with a non-finite loss after which training stops with an error.
MAX_NONFINITE_IN_A_ROW = 10


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_mrr: float = float("nan")
    seconds: float = 0.0
    stopped_early: bool = False
    start_valid_mrr: float = float("nan")
    skipped_steps: int = 0  # steps not applied because their loss was not finite


class Trainer:
    """Adam over shuffled batches, validation MRR every ``eval_every`` epochs, early stopping.

    The learning rate follows ``lr_schedule`` after ``warmup_epochs`` (see
    :func:`dhns.optim.lr_multiplier`), stepped once per applied step.

    The model ends holding the weights of the best validated epoch (or the last epoch when
    there is no validation).

    With ``resume``, the run writes its whole state there every ``checkpoint_every`` epochs
    and on a stop request, continues from it when it holds this run's state (a killed run
    then ends bit-identical to an uninterrupted one), and removes it when done.

    ``sparse_updates``: the entity table gets sparse gradients and lazy row updates
    (:class:`dhns.optim.RowAdam`), so a step's cost follows the batch, not the graph.
    """

    def __init__(
        self,
        model: MultimodalKGE,
        train: Tensor,
        loss_fn: LossFn,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
        validate: Validate | None = None,
        eval_every: int = 5,
        patience: int = 0,
        log: Callable[[str], None] = print,
        progress: bool = True,
        desc: str = "train",
        on_epoch_end: Callable[[dict], None] | None = None,
        validate_start: bool = False,
        lr_schedule: str = "constant",
        warmup_epochs: int = 0,
        resume: ResumeFile | None = None,
        checkpoint_every: int = 0,
        stateful: dict[str, Any] | None = None,
        sparse_updates: bool = False,
    ) -> None:
        self.model = model
        self.train = train
        self.loss_fn = loss_fn
        self.epochs = epochs
        self.batch_size = batch_size
        self.generator = generator
        self.validate = validate
        self.eval_every = max(1, eval_every)
        self.patience = patience
        self.main = is_main_process()
        self.log = log if self.main else (lambda _msg: None)
        self.progress = progress and self.main
        self.desc = desc
        self.on_epoch_end = on_epoch_end
        # Continued training: the starting weights are a candidate too (epoch 0), so model
        # selection can never end worse than where it began.
        self.validate_start = validate_start and validate is not None
        self.rank, self.world = rank_and_world()
        if sparse_updates and self.world > 1:
            # The gradient all-reduce sums dense buffers; a sparse table's rows differ by rank.
            self.log(f"{desc}: sparse updates are for single-process runs; dense here")
            sparse_updates = False
        model.sparse_gradients = sparse_updates
        self.optimizer = adam(model.parameters(), lr=lr, sparse_rows=sparse_updates)
        steps_per_epoch = math.ceil(len(train) / batch_size)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_multiplier(lr_schedule, epochs * steps_per_epoch,
                                          warmup_epochs * steps_per_epoch))
        self.step = 0
        self.skipped_steps = 0  # steps whose loss was NaN or infinite (not applied)
        # Resume: the file, how often to write it (epochs; 0: only on a stop request), and
        # other objects whose state_dict() is part of the run (a stateful negative sampler).
        if resume is not None and self.world > 1:
            self.log(f"{desc}: resume state is kept by single-process runs only")
            resume = None
        self.resume = resume
        self.checkpoint_every = checkpoint_every
        self.stateful = stateful or {}

    def fit(self) -> TrainResult:
        """Train (resuming from ``resume`` when it holds this run's state) and return the
        result; a stop request (SIGTERM, Ctrl-C) saves the resume state and raises
        :class:`TrainingStopped`."""
        device = next(self.model.parameters()).device
        train = self.train.to(device)
        steps_per_epoch = math.ceil(len(train) / self.batch_size)
        run = _RunState()
        if self.world > 1:  # every replica starts from rank 0's weights (as DDP does)
            with torch.no_grad():
                for tensor in self.model.state_dict().values():
                    tensor.copy_(broadcast(tensor))
        saved = self.resume.load() if self.resume is not None else None
        if saved is not None:
            self._restore(saved, run, device)
            self.log(f"{self.desc}: resuming from {self.resume.path} at epoch {run.epoch}, "
                     f"step {self.step}")
        elif self.validate_start:
            self.model.eval()
            run.result.start_valid_mrr = run.result.best_valid_mrr = self.validate(self.model)
            run.best_state = copy.deepcopy(self.model.state_dict())
            self.log(f"{self.desc}: starting valid MRR {run.result.start_valid_mrr:.4f}")
        start = time.perf_counter()
        with _stop_requests() as stop:
            while run.epoch <= self.epochs and not run.finished:
                self._epoch(run, train, steps_per_epoch, device, stop)
        if run.best_state is not None:
            self.model.load_state_dict(run.best_state)
        else:
            run.result.best_epoch = len(run.result.history)
        self.model.eval()
        result = run.result
        result.seconds = time.perf_counter() - start
        result.skipped_steps = self.skipped_steps
        if self.resume is not None:
            self.resume.clear()
        return result

    def _epoch(self, run: _RunState, train: Tensor, steps_per_epoch: int,
               device: torch.device, stop: _StopFlag) -> None:
        """Run (the rest of) epoch ``run.epoch``, then validate, log and checkpoint."""
        epoch = run.epoch
        self.model.train()
        epoch_start = time.perf_counter()
        if run.order is None:
            # Under torch.distributed rank 0 shuffles for all: every rank walks the same
            # global batches and takes its own slice of each.
            order = (torch.randperm(len(train), generator=self.generator) if self.rank == 0
                     else torch.empty(len(train), dtype=torch.long))
            run.order = broadcast(order).to(device)
            run.totals, run.skipped_before = {}, self.skipped_steps
        bar = tqdm(range(run.position, steps_per_epoch), desc=f"{self.desc} {epoch}/{self.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        for i in bar:
            if any_rank(stop.requested):
                self._save(run)
                raise TrainingStopped(
                    f"{self.desc}: stopped at epoch {epoch}, step {self.step}"
                    + (f"; rerun to resume from {self.resume.path}" if self.resume else ""))
            batch = train[run.order[i * self.batch_size:(i + 1) * self.batch_size]]
            if self.world > 1:
                batch = torch.tensor_split(batch, self.world)[self.rank]
            if len(batch):
                loss, stats = self.loss_fn(self.model, batch, self.step)
                loss_value = loss.item()
            else:  # a last global batch smaller than the world: this rank adds nothing
                loss, stats, loss_value = None, {}, 0.0
            self.step += 1
            run.position = i + 1
            if any_rank(not math.isfinite(loss_value)):
                # One NaN step would make every weight NaN: skip it, and give up on a run that
                # keeps producing them rather than train garbage.
                self.skipped_steps += 1
                run.skipped_in_a_row += 1
                self.log(f"{self.desc}: skipped step {self.step} (loss {loss_value})")
                if run.skipped_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                    raise FloatingPointError(
                        f"{self.desc}: {run.skipped_in_a_row} steps in a row with a non-finite "
                        "loss; lower the learning rate or check the inputs")
                continue
            run.skipped_in_a_row = 0
            self.optimizer.zero_grad(set_to_none=self.world == 1)
            if loss is not None:
                loss.backward()
            if self.world > 1:
                for p in self.model.parameters():
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                average_gradients(self.model.parameters())
            self.optimizer.step()
            self.lr_scheduler.step()
            stats = {"loss": loss_value, **stats}
            for key, value in stats.items():
                run.totals[key] = run.totals.get(key, 0.0) + value
            bar.set_postfix(loss=f"{stats['loss']:.4f}")
        applied = steps_per_epoch - (self.skipped_steps - run.skipped_before)
        record = {"loss": math.nan,
                  **{key: value / max(applied, 1) for key, value in run.totals.items()}}
        record = {"epoch": epoch, **record, "seconds": time.perf_counter() - epoch_start}
        result = run.result
        if self.validate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
            self.model.eval()
            mrr = self.validate(self.model)
            record["valid_mrr"] = mrr
            first = math.isnan(result.best_valid_mrr)
            if not math.isnan(mrr) and (first or mrr > result.best_valid_mrr):
                result.best_valid_mrr, result.best_epoch = mrr, epoch
                run.best_state = copy.deepcopy(self.model.state_dict())
                run.bad_evals = 0
            else:
                run.bad_evals += 1
        result.history.append(record)
        self.log(_format(record))
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)
        if self.patience and run.bad_evals >= self.patience:
            result.stopped_early = True
            run.finished = True
            self.log(f"early stop: no validation gain in {run.bad_evals} evaluations")
        run.epoch, run.position, run.order = epoch + 1, 0, None
        if (self.resume is not None and self.checkpoint_every and not run.finished
                and epoch < self.epochs and epoch % self.checkpoint_every == 0):
            self._save(run)

    # -- resume state ----------------------------------------------------------------------
    def _save(self, run: _RunState) -> None:
        if self.resume is None:
            return
        r = run.result
        self.resume.save({
            "epoch": run.epoch, "position": run.position, "order": run.order,
            "totals": run.totals, "skipped_before": run.skipped_before,
            "skipped_in_a_row": run.skipped_in_a_row, "bad_evals": run.bad_evals,
            "step": self.step, "skipped_steps": self.skipped_steps,
            "history": r.history, "best_epoch": r.best_epoch,
            "best_valid_mrr": r.best_valid_mrr, "start_valid_mrr": r.start_valid_mrr,
            "best_state": run.best_state, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()}})

    def _restore(self, saved: dict, run: _RunState, device: torch.device) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.lr_scheduler.load_state_dict(saved["lr_scheduler"])
        self.generator.set_state(saved["generator"])
        for name, obj in self.stateful.items():
            obj.load_state_dict(saved["stateful"].get(name, {}))
        self.step, self.skipped_steps = saved["step"], saved["skipped_steps"]
        run.epoch, run.position = saved["epoch"], saved["position"]
        run.order = None if saved["order"] is None else saved["order"].to(device)
        run.totals, run.skipped_before = dict(saved["totals"]), saved["skipped_before"]
        run.skipped_in_a_row, run.bad_evals = saved["skipped_in_a_row"], saved["bad_evals"]
        run.best_state = saved["best_state"]
        r = run.result
        r.history, r.best_epoch = list(saved["history"]), saved["best_epoch"]
        r.best_valid_mrr, r.start_valid_mrr = saved["best_valid_mrr"], saved["start_valid_mrr"]


@dataclass
class _RunState:
    """Where a run is: everything besides the model, optimiser and counters that a resume
    must restore (see :meth:`Trainer._save`)."""

    result: TrainResult = field(default_factory=TrainResult)
    epoch: int = 1
    position: int = 0  # next batch of the epoch
    order: Tensor | None = None  # the epoch's permutation, once drawn
    totals: dict[str, float] = field(default_factory=dict)
    skipped_before: int = 0
    skipped_in_a_row: int = 0
    bad_evals: int = 0
    best_state: dict | None = None
    finished: bool = False


class _StopFlag:
    requested = False


@contextlib.contextmanager
def _stop_requests():
    """Turn SIGTERM and SIGINT into a flag the loop checks between steps (main thread only;
    elsewhere signals keep their handlers)."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request(signum, frame) -> None:
        flag.requested = True

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _format(record: dict) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds")]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
