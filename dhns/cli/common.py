"""What the command modules share: the ``app``, the user-error wrapper, tables, options."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dhns.errors import (
    STOPPED_EXIT,
    USER_ERRORS,
    DistributedError,
    TrainingStopped,
    error_message,
)

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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
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


def warn(warnings: Sequence[str]) -> None:
    """Each of ``warnings`` as a ``warning:`` line on stderr."""
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
