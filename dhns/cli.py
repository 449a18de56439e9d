"""The ``dhns`` command line: pipeline stages, dataset management, evaluation and prediction.

Every stage command runs ``stages/<name>.py`` from the current directory, exactly like the
``python -m stages.<name>`` commands of ``dvc.yaml``; DVC remains the way to run the whole
pipeline (``make run`` / ``dvc repro``). Heavy modules (torch, the stages) are imported inside
the commands so ``dhns --help`` stays fast.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dhns.errors import (
    STOPPED_EXIT,
    USER_ERRORS,
    DistributedError,
    TrainingStopped,
    UserError,
    error_message,
)
from dhns.project import project_root

if TYPE_CHECKING:
    from dhns.config import Params
    from dhns.data.kg import KnowledgeGraph
    from dhns.kge.model import MultimodalKGE

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="dhns",
    help="DHNS: diffusion-based hierarchical negative sampling for multimodal knowledge graph "
    "completion. Pipeline stages (run from the project folder, reading params.yaml), "
    "dataset management, evaluation and link prediction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(
    help="Bring datasets into the data folder (import, download, generate) and inspect them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Params file (validated strictly).")
]
OverridesOption = Annotated[
    list[str] | None, typer.Option(
        "--set", "-S", metavar="KEY=VALUE",
        help="Override a param for this run only, as `dvc exp run -S` does (repeatable; the "
        "value is read as YAML). DVC does not record it: use `dvc exp run -S` for tracked "
        "runs.")
]
MODELS = ("pretrain", "uniform", "dhns")  # rows of `dhns results`, in this order


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"dhns {version('dhns')}")
        except PackageNotFoundError:  # a checkout run with `python -m dhns`, not installed
            typer.echo("dhns (not installed)")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
         = False) -> None:
    """DHNS: diffusion-based hierarchical negative sampling for multimodal knowledge graph
    completion."""


# --------------------------------------------------------------------------- plumbing


def report_user_errors(fn: F) -> F:
    """Turn user mistakes into one ``error: ...`` line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, DistributedError) as exc:
            typer.echo(f"error: {error_message(exc)}", err=True)
            raise typer.Exit(1) from None
        except TrainingStopped as exc:
            typer.echo(f"stopped: {exc}", err=True)
            raise typer.Exit(STOPPED_EXIT) from None

    return wrapper  # type: ignore[return-value]


def _import_stages(module: str) -> Any:
    """Import ``stages.<module>`` from :func:`project_root`, the code ``dvc repro`` runs here.

    The ``dhns`` console script does not have the current folder on ``sys.path``, so put the
    project root first.
    """
    root = project_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
    mod = importlib.import_module(f"stages.{module}")
    origin = Path(mod.__file__ or "").resolve()
    if not origin.is_relative_to(root / "stages"):
        raise UserError(f"stages.{module} was imported from {origin}, not from the project "
                        f"here ({root}); another `stages` package shadows it")
    return mod


def _stage_function(module: str, function: str) -> Callable[[Params], Any]:
    try:
        mod = _import_stages(module)
    except ModuleNotFoundError as exc:
        if exc.name in ("stages", f"stages.{module}"):
            raise FileNotFoundError(
                f"stage module stages/{module}.py is not available in this checkout"
            ) from None
        raise FileNotFoundError(f"stage {module} cannot be imported: {exc}") from None
    return getattr(mod, function)


def _run_stage(module: str, params_path: Path, function: str = "run",
               overrides: Sequence[str] = ()) -> Any:
    from dhns.config import load_params
    from dhns.device import resolve_device, set_deterministic
    from dhns.distributed import init_from_environment

    # bad params are reported wherever the command runs
    params = load_params(params_path, overrides)
    set_deterministic(params.deterministic)
    init_from_environment(resolve_device(params.device))  # `torchrun -m dhns pretrain`
    return _stage_function(module, function)(params)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A plain text table; ``align`` has one ``l``/``r`` per column (default: ``lrr...``)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(row, widths, align, strict=True)).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(cells[0]), line(rule)] + [line(r) for r in cells[1:]])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def _summary_line(kg: KnowledgeGraph) -> str:
    s = kg.summary()
    return (f"{s['entities']} entities, {s['relations']} relations, "
            f"{s['train']}/{s['valid']}/{s['test']} train/valid/test triples, "
            f"{s['with_description']} with a description, {s['with_images']} with images")


# --------------------------------------------------------------------------- stages


def _add_stage(name: str, module: str, help_text: str, function: str = "run") -> None:
    @report_user_errors
    def command(params: ParamsOption = Path("params.yaml"),
                overrides: OverridesOption = None) -> None:
        _run_stage(module, params, function, overrides or ())

    command.__name__ = name.replace("-", "_")
    command.__doc__ = help_text
    app.command(name, help=help_text)(command)


_add_stage("synthetic", "synthetic",
           "Generate the embedded synthetic dataset. Reads data.synthetic and data.dir; "
           "writes <data.dir>/synthetic.")
_add_stage("prepare", "prepare",
           "Load and validate the dataset <data.dir>/<data.name> (cleaning valid if "
           "data.clean_valid). Writes artifacts/prepared and {metrics,reports}/prepare.json.")
_add_stage("text-features", "features",
           "Extract text features of the prepared entities (features.text). Reads "
           "artifacts/prepared; writes artifacts/features/text.pt and "
           "{metrics,reports}/text_features.json.", function="run_text")
_add_stage("image-features", "features",
           "Extract image features of the prepared entities (features.image). Reads "
           "artifacts/prepared; writes artifacts/features/image.pt and "
           "{metrics,reports}/image_features.json.", function="run_image")
_add_stage("pretrain", "pretrain",
           "Pretrain the multimodal KGE in the kge.loss regime (kge, pretrain). Reads "
           "artifacts/prepared and artifacts/features; writes artifacts/pretrain/model.pt, "
           "{metrics,reports}/pretrain.json and plots/pretrain.csv.")
_add_stage("diffusion", "diffusion",
           "Train the diffusion negative sampler on the pretrained embeddings (model). Reads "
           "artifacts/prepared and artifacts/pretrain/model.pt; writes "
           "artifacts/diffusion/sampler.pt, {metrics,reports}/diffusion.json and "
           "plots/diffusion*.csv.")
_add_stage("uniform", "uniform",
           "Equal-budget baseline: continue the pretrained KGE with ordinary negatives only "
           "(retrain.epochs). Writes artifacts/uniform/model.pt, {metrics,reports}/uniform.json "
           "and plots/uniform.csv.")
_add_stage("retrain", "retrain",
           "Continue the pretrained KGE with DHNS hierarchical negatives from the diffusion "
           "sampler (retrain). Reads artifacts/pretrain/model.pt and "
           "artifacts/diffusion/sampler.pt; writes artifacts/retrain/model.pt, "
           "{metrics,reports}/retrain.json, plots/retrain.csv and dvclive/retrain.")
_add_stage("figures", "figures",
           "Draw the run's PNG figures (training curves, score distributions, a PCA of the "
           "generated negatives among the real entities) from plots/*.csv and "
           "metrics/pretrain.json; writes plots/figures/*.png.")


# --------------------------------------------------------------------------- tune


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


# --------------------------------------------------------------------------- evaluate


def _metrics_table(metrics: dict[str, Any]) -> str:
    opt = metrics.get("optimistic", {})
    rows = [(label, metrics.get(key), opt.get(key)) for label, key in (
        ("MRR", "mrr"), ("MR", "mr"), ("Hits@1", "hits@1"), ("Hits@3", "hits@3"),
        ("Hits@10", "hits@10"))]
    return _table(["metric", "realistic", "optimistic"], rows)


def _results_table(results: dict[str, Any]) -> str:
    names = [m for m in MODELS if m in results] + [m for m in results if m not in MODELS]
    rows = []
    for name in names:
        m = results[name]
        if not isinstance(m, dict) or "mrr" not in m:  # e.g. "resources" in an old file
            continue
        rows.append((name, m.get("mrr"), m.get("hits@1"), m.get("hits@3"), m.get("hits@10"),
                     m.get("optimistic", {}).get("mrr")))
    return _table(["model", "MRR", "H@1", "H@3", "H@10", "opt. MRR"], rows)


def _load_pair(checkpoint: Path, dataset: Path, device: str = "cpu"
               ) -> tuple[MultimodalKGE, dict, KnowledgeGraph]:
    """A checkpoint and a dataset folder, checked to have the same entity and relation ids."""
    from dhns.data import load_dataset
    from dhns.device import resolve_device
    from dhns.training.checkpoint import load_kge

    kg, warnings = load_dataset(dataset)
    _warn(warnings)
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
        results = _run_stage("evaluate", params)
        typer.echo(strict_json(results) if as_json else _results_table(results))
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


# --------------------------------------------------------------------------- results


@app.command("results")
@report_user_errors
def results_command(
    metrics: Annotated[Path, typer.Option(help="The evaluate stage's metrics file.")
                       ] = Path("metrics/evaluate.json"),
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
    typer.echo(_results_table(results))


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
    typer.echo(_table(["sampler", "per positive", "reads model", "options"], rows, "llll"))
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


# --------------------------------------------------------------------------- data


@data_app.command("import")
@report_user_errors
def data_import(
    name: Annotated[str, typer.Argument(help="Dataset name: the folder created in --data-dir.")],
    source: Annotated[Path, typer.Option("--from", help="Folder to import (OpenKE or TSV).")],
    data_dir: Annotated[Path, typer.Option(help="Where datasets live (data.dir).")
                        ] = Path("data"),
) -> None:
    """Validate a dataset folder, then copy it to DATA_DIR/NAME.

    The folder is checked first (layout, counts, id ranges, names); on any problem nothing is
    written. An existing DATA_DIR/NAME is replaced only after the copy succeeded. Use it with
    data.name: NAME in params.yaml.
    """
    from dhns.data import import_dataset

    kg, warnings = import_dataset(name, source, data_dir)
    _warn(warnings)
    typer.echo(f"imported {name} into {data_dir / name}: {_summary_line(kg)}")


@data_app.command("download")
@report_user_errors
def data_download(
    name: Annotated[str, typer.Argument(help="DB15K, MKG-W or MKG-Y.")],
    data_dir: Annotated[Path, typer.Option(help="Where datasets live (data.dir).")
                        ] = Path("data"),
    base_url: Annotated[str | None, typer.Option(
        help="Fetch <URL>/<NAME>/<file> instead of the pinned GitHub URLs (mirrors).")] = None,
    allow_redirects: Annotated[bool, typer.Option(
        "--allow-redirects",
        help="Follow HTTP redirects to another host (refused by default; same-host "
        "redirects are always followed).")] = False,
    allow_file_url: Annotated[bool, typer.Option(
        "--allow-file-url",
        help="Accept a file:// --base-url (a local mirror; refused by default).")] = False,
) -> None:
    """Download a benchmark (DB15K, MKG-W, MKG-Y) into DATA_DIR/NAME.

    Files come from pinned commits of the NATIVE / K-ON repositories; every file's SHA-256 is
    checked and the result is validated before it is moved into place. Only http(s) URLs are
    used, and a redirect to another host is an error, unless the flags below allow it.
    """
    from dhns.data import download_dataset, load_dataset

    target = download_dataset(name, data_dir, base_url=base_url, progress=sys.stderr.isatty(),
                              allow_redirects=allow_redirects, allow_file_url=allow_file_url)
    kg, warnings = load_dataset(target, name=name)
    _warn(warnings)
    typer.echo(f"downloaded {name} into {target}: {_summary_line(kg)}")


@data_app.command("generate")
@report_user_errors
def data_generate(
    out: Annotated[Path, typer.Option(help="Output folder (replaced atomically).")
                   ] = Path("data/synthetic"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Generate the synthetic typed multimodal KG (TSV layout, with descriptions and PNG
    images) from the data.synthetic section of the params file into OUT."""
    from dhns.config import load_params
    from dhns.data import generate_synthetic, load_dataset

    cfg = load_params(params).data.synthetic
    generate_synthetic(cfg, out)
    kg, warnings = load_dataset(out)
    _warn(warnings)
    typer.echo(f"generated {out}: {_summary_line(kg)}")


@data_app.command("info")
@report_user_errors
def data_info(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (OpenKE or TSV layout).")],
) -> None:
    """Validate a dataset folder and print its counts and warnings. Writes nothing."""
    from dhns.data import load_dataset

    kg, warnings = load_dataset(directory)
    typer.echo(_table(["", "count"], [(k, v) for k, v in kg.summary().items()]))
    typer.echo(f"{len(warnings)} warning(s)")
    for warning in warnings:
        typer.echo(f"  {warning}")


# --------------------------------------------------------------------------- predict


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
    _warn(model.warnings)
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
    typer.echo(_table(["rank", "entity", "score"], rows, align="rlr"))


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
    _warn(model.warnings)
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


# --------------------------------------------------------------------------- negatives


def _load_graph(dataset: Path) -> KnowledgeGraph:
    """A prepared folder (``KnowledgeGraph.save``: has triples.pt) or a raw dataset folder."""
    if (dataset / "triples.pt").is_file():
        from dhns.data.kg import KnowledgeGraph as Graph

        return Graph.load(dataset)
    from dhns.data import load_dataset

    kg, warnings = load_dataset(dataset)
    _warn(warnings)
    return kg


@app.command("negatives")
@report_user_errors
def negatives_command(
    checkpoint: Annotated[Path, typer.Option(help="The KGE checkpoint the sampler was trained "
                                             "on (e.g. artifacts/pretrain/model.pt).")],
    sampler: Annotated[Path, typer.Option(help="The diffusion sampler checkpoint (e.g. "
                                          "artifacts/diffusion/sampler.pt).")],
    dataset: Annotated[Path, typer.Option(help="artifacts/prepared or a dataset folder "
                                          "(names and known triples).")],
    relation: Annotated[str, typer.Option(help="Relation name or key.")],
    head: Annotated[str | None, typer.Option(help="Head entity: generate tails.")] = None,
    tail: Annotated[str | None, typer.Option(help="Tail entity: generate heads.")] = None,
    k: Annotated[int, typer.Option("-k", "--top",
                                   help="Nearest real entities shown per level.")] = 5,
    params: ParamsOption = Path("params.yaml"),
    seed: Annotated[int, typer.Option(help="Seed of the reverse chain's noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "cpu",
) -> None:
    """Show the hard negatives DHNS generates for one query, level by level.

    Generates the missing tail of (HEAD, RELATION, ?) (or head of (?, RELATION, TAIL)) at every
    hardness level t_k of model.levels, with model.sampling_steps strided reverse steps (>= T:
    the full ancestral chain), and fuses the generated modality embeddings with the KGE's
    attention as NTAT does (the generated entity has exactly the modalities generated for it).
    Per level it prints the score of the generated triple, its rank among the real wrong
    answers (1 + how many entities that are not known answers score higher), the real entity
    nearest to it by Euclidean distance in the fused space and whether that one is a known
    answer (a likely false negative), then the k real entities nearest to the generated
    entity: their distance to it, the score of the triple with them instead, and a * for
    answers known to be true (train, valid or test).

    Distance: for RotatE and TransE the score function's own distance, gamma - match(g, e)
    (RotatE: sum of the complex moduli |g_i - e_i|; TransE: L1), so an entity at distance d
    scores within d of the generated triple; for DistMult and ComplEx the Euclidean distance.
    The dataset may be artifacts/prepared or a raw dataset folder. Writes nothing.
    """
    import torch

    from dhns.config import load_params
    from dhns.device import resolve_device
    from dhns.evaluation.filter import FilterIndex
    from dhns.negatives import HierarchicalGenerator, fuse_generated
    from dhns.negatives.diagnostics import generated_ranks, nearest_real_entity
    from dhns.training.checkpoint import load_kge, load_sampler

    if (head is None) == (tail is None):
        raise UserError("give exactly one of --head (generate tails) or --tail (generate heads)")
    if k < 1:
        raise UserError("-k must be >= 1")
    cfg = load_params(params).model
    dev = resolve_device(device)
    kg = _load_graph(dataset)
    vocabulary = kg.vocabulary()
    model, _ = load_kge(checkpoint, dev, vocabulary, dataset)
    diffusion, _ = load_sampler(sampler, dev, vocabulary, dataset)
    width = model.scorer.entity_width
    if diffusion.dim != width:
        raise UserError(f"{sampler}: the sampler generates {diffusion.dim}-wide embeddings but "
                        f"{checkpoint} has {width}-wide entities (not trained on this KGE)")
    unknown = sorted({s.split(":")[0] for s in diffusion.modalities} - set(model.modalities))
    if unknown:
        raise UserError(f"{sampler}: generates modalities {unknown} that {checkpoint} lacks")
    anchor_name = head if head is not None else tail
    assert anchor_name is not None
    from dhns.api import resolve_name

    anchor = resolve_name(anchor_name, kg.entity_names, kg.entity_keys, "entity")
    r = resolve_name(relation, kg.relation_names, kg.relation_keys, "relation")
    direction = "tail" if head is not None else "head"
    hier = HierarchicalGenerator(diffusion, cfg.levels, cfg.sampling_steps)

    with torch.no_grad():
        # The unknown side of the triple is a placeholder: only `direction`'s chain is used,
        # and it is conditioned on the anchor and the relation only.
        batch = torch.tensor([[anchor, r, anchor]], device=dev)
        out = hier.generate(model, batch, torch.Generator().manual_seed(seed))
        generated, generated_mask = ((out.tails, out.tail_generated) if direction == "tail"
                                     else (out.heads, out.head_generated))
        if not bool(generated_mask.any()):
            raise UserError(f"{kg.entity_names[anchor]!r} has none of the modalities the "
                            f"sampler generates {direction}s from ({diffusion.modalities})")
        fused = fuse_generated(model, generated, generated_mask)[:, 0]  # (L, D)
        entities = model.all_entity_embeddings()  # (N, D)
        rel = model.relation[r]
        scorer = model.scorer
        if direction == "tail":
            real_scores = scorer.score(entities[anchor], rel, entities)  # (N,)
            generated_scores = scorer.score(entities[anchor], rel, fused)  # (L,)
        else:
            real_scores = scorer.score(entities, rel, entities[anchor])
            generated_scores = scorer.score(fused, rel, entities[anchor])
        if scorer.distance_based:
            distance = scorer.gamma - scorer.match(fused[:, None], entities[None])  # (L, N)
        else:
            distance = torch.cdist(fused, entities)
        nearest = torch.topk(distance.float().cpu(), min(k, kg.num_entities), dim=1,
                             largest=False)
        known_index = FilterIndex(kg.all_triples(), kg.num_relations)
        query_args = (model, batch[:, 0 if direction == "tail" else 2], batch[:, 1],
                      fused[:, None], direction, known_index)
        ranks, wrong = generated_ranks(*query_args)  # (L, 1), (1,)
        closest, closest_known = nearest_real_entity(*query_args)

    triples = kg.all_triples()
    anchor_col, answer_col = (0, 2) if direction == "tail" else (2, 0)
    hit = (triples[:, anchor_col] == anchor) & (triples[:, 1] == r)
    known = set(triples[hit, answer_col].tolist())
    h_name = kg.entity_names[anchor] if direction == "tail" else "?"
    t_name = kg.entity_names[anchor] if direction == "head" else "?"
    chain = (f"{hier.sampling_steps} strided reverse steps"
             if hier.sampling_steps is not None and hier.sampling_steps < diffusion.num_steps
             else "full ancestral chain")
    metric = {"rotate": "RotatE distance, sum of complex moduli",
              "transe": "TransE distance, L1"}.get(scorer.name, "Euclidean distance")
    typer.echo(f"({h_name}, {kg.relation_names[r]}, {t_name}): generated {direction}s at "
               f"t = {', '.join(map(str, hier.levels))} of T = {diffusion.num_steps} ({chain}, "
               f"seed {seed})")
    typer.echo(f"{len(nearest.indices[0])} nearest real entities by {metric}; score = KGE "
               f"score with that entity; * = known true ({len(known)} in the dataset)")
    real_scores = real_scores.float().cpu()
    for level, t in enumerate(hier.levels):
        typer.echo("")
        answer = "a known answer" if bool(closest_known[level, 0]) else "not a known answer"
        typer.echo(f"level {level + 1}: t={t}  generated triple score "
                   f"{float(generated_scores[level]):.4f}  rank {int(ranks[level, 0])} among "
                   f"{int(wrong[0])} real wrong answers  nearest real entity (Euclidean) "
                   f"{kg.entity_names[int(closest[level, 0])]}: {answer}")
        rows = [(f"{rank}{'*' if int(i) in known else ''}", kg.entity_names[int(i)],
                 f"{float(d):.4f}", f"{float(real_scores[int(i)]):.4f}")
                for rank, (d, i) in enumerate(zip(nearest.values[level], nearest.indices[level],
                                                  strict=True), 1)]
        typer.echo(_table(["rank", "entity", "distance", "score"], rows, align="rlrr"))

