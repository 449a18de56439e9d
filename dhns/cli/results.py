"""What the runs produced and what is registered: ``dhns results``, ``dhns samplers`` and
``dhns exps``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dhns.cli.common import app, report_user_errors, table
from dhns.errors import UserError

MODELS = ("pretrain", "uniform", "dhns")  # rows of `dhns results`, in this order
EVALUATE_METRICS = Path("metrics/evaluate.json")  # the evaluate stage's, in the project folder


def results_table(results: dict[str, Any]) -> str:
    """One row per model of the evaluate stage's ``results``: MRR, Hits@1/3/10, optimistic MRR."""
    names = [m for m in MODELS if m in results] + [m for m in results if m not in MODELS]
    rows = []
    for name in names:
        m = results[name]
        if not isinstance(m, dict) or "mrr" not in m:  # e.g. the stage's "resources"
            continue
        rows.append((name, m.get("mrr"), m.get("hits@1"), m.get("hits@3"), m.get("hits@10"),
                     m.get("optimistic", {}).get("mrr")))
    return table(["model", "MRR", "H@1", "H@3", "H@10", "opt. MRR"], rows)


@app.command("results")
@report_user_errors
def results_command(
    metrics: Annotated[Path, typer.Option(help="The evaluate stage's metrics file.")
                       ] = EVALUATE_METRICS,
) -> None:
    """Print the evaluate stage's metrics as a table: one row per model (pretrain, uniform,
    dhns), realistic MRR and Hits@1/3/10, and the optimistic MRR.

    Reads metrics/evaluate.json (written by `dhns evaluate` / `dvc repro`)."""
    if not metrics.is_file():
        raise FileNotFoundError(
            f"{metrics}: no evaluation results yet (run `make run`, `dvc repro` or "
            "`dhns evaluate`)")
    try:
        results = json.loads(metrics.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{metrics}: not valid JSON ({exc})") from None
    if not isinstance(results, dict) or not results:
        raise UserError(f"{metrics}: expected a mapping of model name to metrics")
    typer.echo(results_table(results))


@app.command("samplers")
@report_user_errors
def samplers_command() -> None:
    """List the registered negative samplers (`kge.negative_sampler`): their options with
    defaults (set them under `kge.sampler_options.<name>`), whether they draw one candidate row
    per positive, whether they read the model, and what they cost beyond uniform."""
    import dataclasses

    from dhns.samplers import known_samplers, sampler_class

    rows = []
    for name in known_samplers():
        cls = sampler_class(name)
        options = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Options))
        rows.append([name, "yes" if cls.per_positive else "shared", "yes" if cls.uses_model
                     else "no", options or "-"])
    typer.echo(table(["sampler", "per positive", "reads model", "options"], rows, "llll"))
    typer.echo("")
    for name in known_samplers():
        typer.echo(f"{name}: {sampler_class(name).cost}")


@app.command("exps")
@report_user_errors
def exps_command(
    width: Annotated[int, typer.Option(help="Widest line to print.")] = 100,
) -> None:
    """DVC experiments of this project in a table that fits a terminal: each commit and
    experiment, MRR of pretrain, uniform and dhns, DHNS's gain over uniform, and the params
    that differ from the commit it branched from (`dvc exp show` prints every column)."""
    import shutil
    import subprocess
    import sys

    from dhns.experiments import experiment_rows, format_rows

    dvc = Path(sys.executable).parent / "dvc"
    command = str(dvc) if dvc.exists() else shutil.which("dvc")
    if command is None:
        raise FileNotFoundError("dvc is not installed (run `make install`)")
    done = subprocess.run([command, "exp", "show", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or "dvc exp show failed").splitlines()
        raise UserError(f"dvc exp show: {lines[-1]}")
    typer.echo(format_rows(experiment_rows(json.loads(done.stdout)), width))
