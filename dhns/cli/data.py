"""``dhns data ...``: bring datasets into the data folder and inspect them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dhns.cli.common import ParamsOption, app, report_user_errors, table, warn

if TYPE_CHECKING:
    from dhns.data.kg import KnowledgeGraph

data_app = typer.Typer(
    help="Bring datasets into the data folder (import, download, generate) and inspect them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")


def _summary_line(kg: KnowledgeGraph) -> str:
    s = kg.summary()
    return (f"{s['entities']} entities, {s['relations']} relations, "
            f"{s['train']}/{s['valid']}/{s['test']} train/valid/test triples, "
            f"{s['with_description']} with a description, {s['with_images']} with images")


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
    warn(warnings)
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
    warn(warnings)
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
    warn(warnings)
    typer.echo(f"generated {out}: {_summary_line(kg)}")


@data_app.command("info")
@report_user_errors
def data_info(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (OpenKE or TSV layout).")],
) -> None:
    """Validate a dataset folder and print its counts and warnings. Writes nothing."""
    from dhns.data import load_dataset

    kg, warnings = load_dataset(directory)
    typer.echo(table(["", "count"], [(k, v) for k, v in kg.summary().items()]))
    typer.echo(f"{len(warnings)} warning(s)")
    for warning in warnings:
        typer.echo(f"  {warning}")
