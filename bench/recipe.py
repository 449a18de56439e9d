"""Benchmark recipes: the params fragments in ``recipes/`` that ``bench/row.sh`` runs with.

A recipe is a nested fragment of ``params.yaml`` (``kge: {dim: 250}``), without ``data.name``
and ``seed`` (``bench/row.sh`` sets those from its arguments). This module checks it against
the params schema (:func:`dhns.config.params_from_dict`) and writes it as ``dvc exp run -S``
overrides, one per line, in the file's order::

    python -m bench.recipe recipes/MKG-Y.yaml    # -S kge.dim=250, -S kge.modalities=[...], ...
    python -m bench.recipe --which MKG-Y         # the file bench/row.sh uses for MKG-Y

``--which DATASET``: ``$RECIPE`` when set, else ``recipes/DATASET.yaml`` when it exists, else
``recipes/default.yaml``; printed relative to the repository where it lies inside it, so the
command a row records stays repository-relative. A recipe that does not validate stops with one
line, ``FILE: KEY: REASON`` (an unknown key: ``FILE: unknown key KEY (...)``), and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dhns.config import ConfigError, dotted, format_assignment, params_from_dict, read_yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = "recipes"
DEFAULT = "default"
#: Set by bench/row.sh from DATASET and SEED; in a recipe they would silently override those.
ROW_KEYS = ("data.name", "seed")


def load_recipe(path: Path) -> dict:
    """The recipe at ``path`` as a nested mapping, checked against the params schema; every
    error is a :class:`ConfigError` naming ``path``."""
    raw = read_yaml(path, "recipe")
    raw = {} if raw is None else raw  # an empty recipe: params.yaml as it is
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of params sections, "
                          f"got {type(raw).__name__}")
    try:
        for key in dotted(raw):
            if key in ROW_KEYS:
                raise ConfigError(f"{key}: set by bench/row.sh from its arguments, "
                                  "not by a recipe")
        params_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return raw


def recipe_overrides(path: Path) -> list[str]:
    """The recipe at ``path`` as ``key=value`` overrides (``dvc exp run -S`` values)."""
    raw = load_recipe(path)
    try:
        return [format_assignment(key, value) for key, value in dotted(raw).items()]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def select_recipe(dataset: str, root: Path = REPO, recipe: str | None = None) -> Path:
    """The recipe ``bench/row.sh DATASET`` runs with: ``recipe`` (``$RECIPE``; relative to the
    current folder) when given, else ``root/recipes/DATASET.yaml`` if present, else
    ``root/recipes/default.yaml``."""
    if recipe:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"RECIPE={recipe}: no such recipe file")
        return path
    own = root / RECIPES / f"{dataset}.yaml"
    path = own if own.is_file() else root / RECIPES / f"{DEFAULT}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file (and no {own})")
    return path


def shown(path: Path, root: Path = REPO) -> str:
    """``path`` relative to ``root`` where it lies inside it (recorded commands stay
    repository-relative), else absolute."""
    resolved = path.resolve()
    if resolved.is_relative_to(root.resolve()):
        return resolved.relative_to(root.resolve()).as_posix()
    return str(resolved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe",
                                     description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", type=Path, help="a recipe: print its -S overrides")
    what.add_argument("--which", metavar="DATASET",
                      help="print the recipe bench/row.sh uses for DATASET ($RECIPE wins)")
    args = parser.parse_args(argv)
    try:
        if args.which is not None:
            print(shown(select_recipe(args.which, recipe=os.environ.get("RECIPE"))))
        else:
            # One override a line: bash's mapfile reads each as one argument, with no word
            # splitting or globbing, so no value needs shell quoting.
            for override in recipe_overrides(args.file):
                print(f"-S {override}")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
