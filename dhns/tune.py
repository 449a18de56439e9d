"""``dhns tune``: an Optuna search over params, scored by pretraining's validation MRR.

A search space is a YAML mapping from dotted param keys to one of::

    pretrain.lr:  {log: [0.0001, 0.01]}      # float, log-uniform
    kge.n3:       {range: [0.0, 0.01]}       # float, uniform
    kge.dim:      {int: [64, 256], step: 64}
    kge.loss:     {choice: [ns, shared]}

Each trial pretrains the KGE with the project's params plus the trial's values (every trial
is validated by the params schema first) and returns the best filtered MRR on the fixed
validation subset; trials that trail the median at the same epoch are pruned. The study
lives in an SQLite file, so a second run with the same folder resumes it. After every trial
``trials.csv`` (one row per trial) and ``best.yaml`` (the best trial's values, as ``-S``
overrides would set them) are rewritten atomically.
"""

from __future__ import annotations

import copy
import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dhns.config import ConfigError, params_from_dict, set_dotted
from dhns.data.kg import KnowledgeGraph
from dhns.features.table import FeatureTable
from dhns.io import atomic_write_text
from dhns.training.pretrain import pretrain_kge

KINDS = ("log", "range", "int", "choice")
STUDY_FILE, TRIALS_FILE, BEST_FILE = "study.db", "trials.csv", "best.yaml"


def load_space(path: Path, base: dict) -> dict[str, dict]:
    """The search space in ``path``, checked: known kinds, bounds in order, and every key a
    param that ``base`` (raw params) accepts at both ends of its range."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of param keys to ranges")
    for key, spec in raw.items():
        where = f"{path}: {key}"
        if not isinstance(spec, dict) or len(set(spec) & set(KINDS)) != 1:
            raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)}")
        kind = next(k for k in KINDS if k in spec)
        values = spec[kind]
        if kind == "choice":
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: choice needs a non-empty list")
        elif (not isinstance(values, list) or len(values) != 2
              or not all(isinstance(v, int | float) for v in values) or values[0] >= values[1]):
            raise ConfigError(f"{where}: {kind} needs [low, high] with low < high")
        elif kind == "log" and values[0] <= 0:
            raise ConfigError(f"{where}: log needs low > 0")
        ends = values if kind == "choice" else [values[0], values[1]]
        for value in ends:
            try:
                params_from_dict(with_overrides(base, {key: value}))
            except ConfigError as err:
                raise ConfigError(f"{where}: {value!r} is not accepted ({err})") from None
    return raw


def with_overrides(base: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of raw params ``base`` with dotted-key ``overrides`` set."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(out, key, value)
    return out


def suggest(trial: Any, space: dict[str, dict]) -> dict[str, Any]:
    """The trial's value for every key of ``space``."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        if "log" in spec:
            out[key] = trial.suggest_float(key, *spec["log"], log=True)
        elif "range" in spec:
            out[key] = trial.suggest_float(key, *spec["range"])
        elif "int" in spec:
            out[key] = trial.suggest_int(key, *spec["int"], step=spec.get("step", 1))
        else:
            out[key] = trial.suggest_categorical(key, spec["choice"])
    return out


def run_study(base: dict, space: dict[str, dict], kg: KnowledgeGraph,
              features: dict[str, FeatureTable], out: Path, trials: int,
              timeout: float | None = None, log: Callable[[str], None] = print,
              prune_after: int = 0) -> Any:
    """Run (or resume) the study in ``out`` for ``trials`` more trials or ``timeout`` seconds;
    returns the ``optuna.Study``. No trial is pruned before epoch ``prune_after``."""
    import optuna  # heavy: only when tuning

    out.mkdir(parents=True, exist_ok=True)
    seed = params_from_dict(base).seed
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="dhns", storage=f"sqlite:///{(out / STUDY_FILE).resolve()}",
        load_if_exists=True, direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_after))
    # seeded by the number of earlier trials: a resumed study does not replay the same draws
    study.sampler = optuna.samplers.TPESampler(seed=seed * 1000 + len(study.trials))
    log(f"tune: study {out / STUDY_FILE} with {len(study.trials)} earlier trials; "
        f"{trials} more, {len(space)} keys")

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        params = params_from_dict(with_overrides(base, values))
        log(f"tune: trial {trial.number}: {values}")

        def report(record: dict) -> None:
            mrr = record.get("valid_mrr")
            if mrr is not None and not math.isnan(mrr):
                trial.report(mrr, record["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned()

        done = pretrain_kge(params, kg, features, log=lambda _m: None, on_epoch_end=report)
        trial.set_user_attr("best_epoch", done.result.best_epoch)
        trial.set_user_attr("seconds", round(done.result.seconds, 1))
        return done.result.best_valid_mrr

    def write_results(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log(f"tune: trial {trial.number} {trial.state.name.lower()}"
            f"{f' valid MRR {trial.value:.4f}' if trial.value is not None else ''}")
        write_tables(study, space, out)

    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[write_results],
                   gc_after_trial=True)
    return study


def write_tables(study: Any, space: dict[str, dict], out: Path) -> None:
    """``trials.csv`` and ``best.yaml`` for ``study`` (both rewritten whole)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", "valid_mrr", "best_epoch", "seconds", *space])
    for trial in study.trials:
        writer.writerow([trial.number, trial.state.name.lower(),
                         "" if trial.value is None else round(trial.value, 6),
                         trial.user_attrs.get("best_epoch", ""),
                         trial.user_attrs.get("seconds", ""),
                         *(trial.params.get(key, "") for key in space)])
    atomic_write_text(out / TRIALS_FILE, buffer.getvalue())
    complete = [t for t in study.trials if t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)
        atomic_write_text(out / BEST_FILE, yaml.safe_dump(
            {"trial": best.number, "valid_mrr": round(best.value, 6),
             "overrides": dict(best.params)}, sort_keys=False))
