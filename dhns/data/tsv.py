"""Loader for the plain TSV layout, for users' own KGs.

- ``train.tsv``, ``valid.tsv``, ``test.tsv``: ``head<TAB>relation<TAB>tail`` by name, no header.
  Ids are assigned in order of first appearance over train, then valid, then test (head
  before tail within a row), so the same files always give the same ids.
- optional ``entities.tsv``: header ``name<TAB>description`` (empty description = none);
- optional ``descriptions.tsv``: ``name<TAB>description``, no header;
- optional ``images/<entity name>/`` folders of image files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dhns.data.errors import DataError
from dhns.data.kg import KnowledgeGraph
from dhns.data.validate import (
    NO_TEST,
    SPLITS,
    derive_name,
    empty_valid_warning,
    find_image_dirs,
    finish_graph,
    nonblank,
    read_descriptions,
    read_lines,
)

MARKER = "train.tsv"


def read_named_triples(path: Path) -> list[list[str]]:
    """``head<TAB>relation<TAB>tail`` rows as lists of three stripped, non-empty strings."""
    numbers, texts = nonblank(read_lines(path))
    rows = []
    for number, text in zip(numbers, texts, strict=True):
        fields = [f.strip() for f in text.split("\t")]
        if len(fields) != 3:
            raise DataError(
                path, f"expected 3 tab-separated fields (head relation tail), got {len(fields)}",
                line=number,
            )
        if not all(fields):
            raise DataError(path, "empty field", line=number)
        rows.append(fields)
    return rows


def _read_entities_tsv(
    path: Path, ids: dict[str, int], warnings: list[str]
) -> dict[int, str]:
    """``entities.tsv`` (header ``name<TAB>description``) -> ``{entity id: description}``.

    A name listed twice is an error naming both lines (silently keeping one would hide a
    merge mistake); names in no triple are one warning.
    """
    lines = read_lines(path)
    if not lines or lines[0].split("\t")[0].strip().lower() != "name":
        raise DataError(path, "expected the header row name<TAB>description", line=1)
    out: dict[int, str] = {}
    first_line: dict[str, int] = {}
    unknown = 0
    numbers, texts = nonblank(lines, start=1)
    for number, text in zip(numbers, texts, strict=True):
        fields = text.split("\t")
        if len(fields) > 2:
            raise DataError(path, f"expected name<TAB>description, got {len(fields)} fields",
                            line=number)
        key = fields[0].strip()
        if key in first_line:
            raise DataError(path, f"entity {key!r} already defined at line {first_line[key]}",
                            line=number)
        first_line[key] = number
        i = ids.get(key)
        if i is None:
            unknown += 1
            continue
        desc = fields[1].strip() if len(fields) == 2 else ""
        if desc:
            out[i] = desc
    if unknown:
        warnings.append(f"{path.name}: {unknown} entities that occur in no triple ignored")
    return out


def load_tsv(
    directory: Path, name: str, clean_valid: bool = True
) -> tuple[KnowledgeGraph, list[str]]:
    """Load and validate a TSV-layout folder. Returns the graph and warning strings."""
    warnings: list[str] = []
    rows = {s: read_named_triples(directory / f"{s}.tsv") for s in SPLITS}
    if not rows["train"]:
        raise DataError(directory / "train.tsv", "no training triples")
    if not rows["test"]:
        raise DataError(directory / "test.tsv", NO_TEST)
    if not rows["valid"]:
        warnings.append(empty_valid_warning("valid.tsv"))
    sizes = [len(rows[s]) for s in SPLITS]
    flat = [row for s in SPLITS for row in rows[s]]
    arr = np.array(flat, dtype=object).reshape(-1, 3)
    # factorize keeps first-appearance order; interleave h, t per row so "head before tail".
    ent_codes, ent_uniques = pd.factorize(arr[:, [0, 2]].reshape(-1))
    rel_codes, rel_uniques = pd.factorize(arr[:, 1])
    triples = np.stack(
        [ent_codes.reshape(-1, 2)[:, 0], rel_codes, ent_codes.reshape(-1, 2)[:, 1]], axis=1
    ).astype(np.int64)
    bounds = np.cumsum([0, *sizes])
    splits = {s: triples[bounds[k] : bounds[k + 1]] for k, s in enumerate(SPLITS)}

    entity_keys = [str(k) for k in ent_uniques]
    relation_keys = [str(k) for k in rel_uniques]
    entity_names = [derive_name(k) for k in entity_keys]
    relation_names = [derive_name(k, relation=True) for k in relation_keys]
    n = len(entity_keys)
    ids = {k: i for i, k in enumerate(entity_keys)}

    descriptions: list[str | None] = [None] * n
    if (directory / "entities.tsv").is_file():
        for i, d in _read_entities_tsv(directory / "entities.tsv", ids, warnings).items():
            descriptions[i] = d
    if (directory / "descriptions.tsv").is_file():
        found = read_descriptions(directory / "descriptions.tsv", [entity_keys, entity_names],
                                  warnings)
        for i, d in found.items():
            descriptions[i] = d
    image_dirs = find_image_dirs(directory / "images", entity_keys)

    kg, split_msgs = finish_graph(name, entity_keys, entity_names, relation_keys,
                                  relation_names, splits, clean_valid, descriptions,
                                  image_dirs)
    warnings += split_msgs
    return kg, warnings
