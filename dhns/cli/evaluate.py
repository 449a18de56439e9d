"""``dhns evaluate``: the evaluate stage, or any checkpoint on any dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dhns.cli.common import ParamsOption, app, report_user_errors, table, warn
from dhns.cli.results import EVALUATE_METRICS, results_table
from dhns.cli.stages import run_stage
from dhns.errors import UserError

if TYPE_CHECKING:
    from dhns.data.kg import KnowledgeGraph
    from dhns.kge.model import MultimodalKGE


def _metrics_table(metrics: dict[str, Any]) -> str:
    opt = metrics.get("optimistic", {})
    rows = [(label, metrics.get(key), opt.get(key)) for label, key in (
        ("MRR", "mrr"), ("MR", "mr"), ("Hits@1", "hits@1"), ("Hits@3", "hits@3"),
        ("Hits@10", "hits@10"))]
    return table(["metric", "realistic", "optimistic"], rows)


def _load_pair(checkpoint: Path, dataset: Path, device: str = "cpu"
               ) -> tuple[MultimodalKGE, dict, KnowledgeGraph]:
    """A checkpoint and a dataset folder, checked to have the same entity and relation ids."""
    from dhns.data import load_dataset
    from dhns.device import resolve_device
    from dhns.training.checkpoint import load_kge

    kg, warnings = load_dataset(dataset)
    warn(warnings)
    model, meta = load_kge(checkpoint, resolve_device(device), kg.vocabulary(), dataset)
    return model, meta, kg


@app.command("evaluate")
@report_user_errors
def evaluate_command(
    params: ParamsOption = Path("params.yaml"),
    checkpoint: Annotated[Path | None, typer.Option(
        help="A KGE checkpoint to evaluate instead of running the stage (needs --dataset).")
    ] = None,
    dataset: Annotated[Path | None, typer.Option(
        help="Dataset folder (OpenKE or TSV layout) to evaluate --checkpoint on.")] = None,
    split: Annotated[str | None, typer.Option(
        help="test or valid (with --checkpoint; default test).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Queries per batch (with --checkpoint; default 256).")] = None,
    device: Annotated[str | None, typer.Option(
        help="auto | cpu | cuda | cuda:N (with --checkpoint; default auto).")] = None,
    compile: Annotated[bool, typer.Option(
        help="Fuse the score kernel with torch.compile (with --checkpoint).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Filtered link-prediction evaluation (MRR, MR, Hits@1/3/10; realistic and optimistic).

    Without options, runs the pipeline stage: evaluates the checkpoints
    artifacts/{pretrain,uniform,retrain}/model.pt on the prepared dataset (eval.split,
    eval.batch_size) and writes {metrics,reports}/evaluate.json. With --checkpoint PATH
    --dataset DIR, evaluates any checkpoint on any dataset folder and writes nothing.
    """
    from dhns.io import strict_json  # metrics with NaN print as null: strict JSON

    if checkpoint is None and dataset is None:
        if (split, batch_size, device) != (None, None, None):
            raise UserError("--split, --batch-size and --device go with --checkpoint; the "
                            "stage reads eval.split, eval.batch_size and device from params")
        root = run_stage("evaluate", params)
        results = json.loads((root / EVALUATE_METRICS).read_text())
        results.pop("resources", None)  # the stage's own cost, not a model's metrics
        typer.echo(strict_json(results) if as_json else results_table(results))
        return
    if checkpoint is None or dataset is None:
        raise UserError("--checkpoint and --dataset go together")
    split = split or "test"
    batch_size = 256 if batch_size is None else batch_size
    if split not in ("test", "valid"):
        raise UserError(f"--split must be test or valid, got {split!r}")
    if batch_size < 1:
        raise UserError("--batch-size must be >= 1")

    from dhns.evaluation import FilterIndex, evaluate, kg_test_categories
    from dhns.kge.build import compile_scoring

    model, meta, kg = _load_pair(checkpoint, dataset, device or "auto")
    note = compile_scoring(model, compile, model.entity.device)
    if note.startswith("warning"):
        typer.echo(note, err=True)
    triples = kg.test if split == "test" else kg.valid
    if len(triples) == 0:
        raise UserError(f"{dataset}: the {split} split is empty")
    metrics = evaluate(model.link_predictor(), triples,
                       FilterIndex(kg.all_triples(), kg.num_relations), kg.num_entities,
                       categories=kg_test_categories(kg) if split == "test" else None,
                       batch_size=batch_size, progress=sys.stderr.isatty())
    if as_json:
        typer.echo(strict_json(metrics))
        return
    typer.echo(f"{checkpoint} on {kg.name} ({split}, {metrics['count']} triples, both sides)")
    typer.echo(_metrics_table(metrics))
