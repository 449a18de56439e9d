"""``dhns tune``: a search over params by pretraining validation MRR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dhns.cli.common import ParamsOption, app, report_user_errors


@app.command("tune")
@report_user_errors
def tune_command(
    space: Annotated[Path, typer.Option(
        "--space", help="YAML search space: dotted param key -> {log|range|int|choice: ...} "
        "(see dhns/tune.py)")],
    trials: Annotated[int, typer.Option(min=1, help="Trials to run in this call.")] = 20,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds after which no new trial starts (default: none).")] = None,
    out: Annotated[Path, typer.Option(
        help="Study folder: study.db (resumable), trials.csv, best.yaml.")] = Path("tune"),
    prune_after: Annotated[int, typer.Option(
        min=0, help="Epochs before a trial may be pruned (slow starters need a few).")] = 0,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Search params by pretraining validation MRR (Optuna TPE, median pruning).

    Reads params.yaml as the base, artifacts/prepared and artifacts/features (run `dvc repro
    text_features image_features` first). Each trial pretrains with its values; rerunning with
    the same --out resumes the study. Apply the result with `dvc exp run -S key=value ...`.
    """
    from dhns.config import load_params, to_dict
    from dhns.data.kg import KnowledgeGraph
    from dhns.device import set_deterministic
    from dhns.features.table import load_tables
    from dhns.tune import load_space, run_study

    base = to_dict(load_params(params))
    set_deterministic(base["deterministic"])
    search = load_space(space, base)
    kg = KnowledgeGraph.load(Path("artifacts/prepared"))
    features = load_tables({m: Path(f"artifacts/features/{m}.pt") for m in ("text", "image")},
                           ["text", "image"], kg.vocabulary(), Path("artifacts/prepared"))
    study = run_study(base, search, kg, features, out, trials, timeout,
                      log=lambda m: typer.echo(m, err=True), prune_after=prune_after)
    finished = [t for t in study.trials if t.value is not None]
    if finished:
        best = max(finished, key=lambda t: t.value)
        typer.echo(f"best: trial {best.number}, valid MRR {best.value:.4f}: "
                   + " ".join(f"-S {k}={v}" for k, v in best.params.items()))
