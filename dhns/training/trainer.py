"""A small, explicit training loop shared by pretrain and retrain.

All state lives on the :class:`Trainer` instance and the generator passed in (no globals),
so it can run under ``torchrun``: only rank 0 logs, shows progress and validates.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dhns.kge.model import MultimodalKGE
from dhns.optim import adam, lr_multiplier

# A loss term maps (model, batch (B, 3), step) to (scalar loss, stats for the log).
LossFn = Callable[[MultimodalKGE, Tensor, int], tuple[Tensor, dict[str, float]]]
Validate = Callable[[MultimodalKGE], float]


#: Consecutive steps with a non-finite loss after which training stops with an error.
MAX_NONFINITE_IN_A_ROW = 10


def is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


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
        self.optimizer = adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(len(train) / batch_size)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_multiplier(lr_schedule, epochs * steps_per_epoch,
                                          warmup_epochs * steps_per_epoch))
        self.step = 0
        self.skipped_steps = 0  # steps whose loss was NaN or infinite (not applied)

    def fit(self) -> TrainResult:
        device = next(self.model.parameters()).device
        train = self.train.to(device)
        result = TrainResult()
        best_state = None
        bad_evals = 0
        if self.validate_start:
            self.model.eval()
            result.start_valid_mrr = result.best_valid_mrr = self.validate(self.model)
            best_state = copy.deepcopy(self.model.state_dict())
            self.log(f"{self.desc}: starting valid MRR {result.start_valid_mrr:.4f}")
        start = time.perf_counter()
        steps_per_epoch = math.ceil(len(train) / self.batch_size)
        skipped_in_a_row = 0
        for epoch in range(1, self.epochs + 1):
            self.model.train()
            epoch_start = time.perf_counter()
            order = torch.randperm(len(train), generator=self.generator).to(device)
            totals: dict[str, float] = {}
            skipped_before = self.skipped_steps
            bar = tqdm(range(steps_per_epoch), desc=f"{self.desc} {epoch}/{self.epochs}",
                       disable=not self.progress, leave=False, dynamic_ncols=True)
            for i in bar:
                batch = train[order[i * self.batch_size:(i + 1) * self.batch_size]]
                loss, stats = self.loss_fn(self.model, batch, self.step)
                loss_value = loss.item()
                self.step += 1
                if not math.isfinite(loss_value):
                    # One NaN step would make every weight NaN: skip it, and give up on a run
                    # that keeps producing them rather than train garbage.
                    self.skipped_steps += 1
                    skipped_in_a_row += 1
                    self.log(f"{self.desc}: skipped step {self.step} (loss {loss_value})")
                    if skipped_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                        raise FloatingPointError(
                            f"{self.desc}: {skipped_in_a_row} steps in a row with a non-finite "
                            "loss; lower the learning rate or check the inputs")
                    continue
                skipped_in_a_row = 0
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.lr_scheduler.step()
                stats = {"loss": loss_value, **stats}
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                bar.set_postfix(loss=f"{stats['loss']:.4f}")
            applied = steps_per_epoch - (self.skipped_steps - skipped_before)
            record = {"loss": math.nan,
                      **{key: value / max(applied, 1) for key, value in totals.items()}}
            record = {"epoch": epoch, **record, "seconds": time.perf_counter() - epoch_start}
            if self.validate is not None and (epoch % self.eval_every == 0
                                              or epoch == self.epochs):
                self.model.eval()
                mrr = self.validate(self.model)
                record["valid_mrr"] = mrr
                first = math.isnan(result.best_valid_mrr)
                if not math.isnan(mrr) and (first or mrr > result.best_valid_mrr):
                    result.best_valid_mrr, result.best_epoch = mrr, epoch
                    best_state = copy.deepcopy(self.model.state_dict())
                    bad_evals = 0
                else:
                    bad_evals += 1
            result.history.append(record)
            self.log(_format(record))
            if self.on_epoch_end is not None:
                self.on_epoch_end(record)
            if self.patience and bad_evals >= self.patience:
                result.stopped_early = True
                self.log(f"early stop: no validation gain in {bad_evals} evaluations")
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        else:
            result.best_epoch = len(result.history)
        self.model.eval()
        result.seconds = time.perf_counter() - start
        result.skipped_steps = self.skipped_steps
        return result


def _format(record: dict) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds")]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
