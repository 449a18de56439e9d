"""The project folder: a checkout holding ``dvc.yaml``, ``stages/`` and this ``dhns/``."""

from __future__ import annotations

from pathlib import Path

from dhns.errors import UserError


def project_root(here: str | Path | None = None) -> Path:
    """The dhns project at ``here`` (default: the current folder), which must hold
    ``dvc.yaml`` and ``stages/``, and whose ``dhns/`` must be the library running now.

    Stage commands and :func:`dhns.pipeline` refuse anything else, rather than run one
    checkout's stages with another checkout's library (or write artifacts into the wrong
    folder), and say which two differ.
    """
    import dhns

    here = Path(here if here is not None else Path.cwd()).resolve()
    if not ((here / "dvc.yaml").is_file() and (here / "stages" / "common.py").is_file()):
        raise UserError(f"{here} is not a dhns project folder (no dvc.yaml and stages/ here); "
                        "run stage commands from the project folder")
    library = Path(dhns.__file__).resolve().parent
    if library != here / "dhns":
        raise UserError(f"this dhns command runs the library in {library}, but the project "
                        f"here is {here}: use {here}/.venv/bin/dhns, or `python -m dhns` with "
                        "this project's interpreter")
    return here
