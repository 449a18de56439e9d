"""Top-k link prediction from a checkpoint: once (``dhns predict``) or over HTTP with the
model resident (``dhns serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dhns.cli.common import app, report_user_errors, table, warn
from dhns.errors import UserError

CheckpointOption = Annotated[Path, typer.Option(
    help="A KGE checkpoint (e.g. artifacts/retrain/model.pt).")]
DatasetOption = Annotated[Path, typer.Option(
    help="The dataset folder it was trained on (names and known triples).")]


@app.command("predict")
@report_user_errors
def predict_command(
    checkpoint: CheckpointOption,
    dataset: DatasetOption,
    relation: Annotated[str, typer.Option(help="Relation name or key.")],
    head: Annotated[str | None, typer.Option(help="Head entity: predict tails.")] = None,
    tail: Annotated[str | None, typer.Option(help="Tail entity: predict heads.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="How many candidates to show.")] = 10,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "cpu",
) -> None:
    """Top-k link prediction: tails of (HEAD, RELATION, ?) or heads of (?, RELATION, TAIL).

    Entities and relations are matched by name or key (exact, then case-insensitive). Prints
    rank, entity and score (higher is more plausible); a * marks answers known to be true
    (in train, valid or test). Reads the checkpoint and the dataset; writes nothing.
    """
    from dhns.api import load

    if (head is None) == (tail is None):
        raise UserError("give exactly one of --head (predict tails) or --tail (predict heads)")
    if k < 1:
        raise UserError("-k must be >= 1")
    model = load(checkpoint, dataset, device)
    warn(model.warnings)
    kg = model.graph
    if head is not None:
        predictions = model.predict_tails(head, relation, k)
        anchor, direction = model.entity_id(head), "tail"
    else:
        assert tail is not None
        predictions = model.predict_heads(relation, tail, k)
        anchor, direction = model.entity_id(tail), "head"
    known = model.known_answers(anchor, model.relation_id(relation), direction)
    h_name = kg.entity_names[anchor] if head is not None else "?"
    t_name = kg.entity_names[anchor] if tail is not None else "?"
    r_name = kg.relation_names[model.relation_id(relation)]
    typer.echo(f"({h_name}, {r_name}, {t_name}): top {len(predictions)} of "
               f"{kg.num_entities}; * = known true ({len(known)} in the dataset)")
    rows = [(f"{p.rank}{'*' if p.known else ''}", p.entity, f"{p.score:.4f}")
            for p in predictions]
    typer.echo(table(["rank", "entity", "score"], rows, align="rlr"))


@app.command("serve")
@report_user_errors
def serve_command(
    checkpoint: CheckpointOption,
    dataset: DatasetOption,
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "cpu",
) -> None:
    """Serve top-k link prediction over HTTP with the model kept in memory.

    GET /health; POST /predict with {"queries": [{"head": H, "relation": R, "k": 10}, ...]}
    (or "tail" to predict heads), names or keys. Stops on Ctrl-C."""
    from dhns.api import load
    from dhns.serve import make_server

    model = load(checkpoint, dataset, device, fused=True)
    warn(model.warnings)
    server = make_server(model, host, port)
    address, bound = server.server_address[:2]
    typer.echo(f"serving {checkpoint} on http://{address}:{bound} (GET /health, POST "
               "/predict); Ctrl-C stops", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
