"""Loader for the OpenKE / NativE layout used by DB15K, MKG-W and MKG-Y.

Files (first line of each ``*2id.txt`` is the record count):

- ``entity2id.txt``, ``relation2id.txt``: ``<key> <id>``;
- ``train2id.txt``, ``valid2id.txt``, ``test2id.txt``: ``h t r`` (OpenKE order, **not** h r t);
- optional ``test2id_all.txt``: ``cat<TAB>h t r`` with cat 0..3 = 1-1, 1-n, n-1, n-n;
- optional ``entity_names.tsv`` / ``relation_names.tsv`` (header row, name = last column), or
  K-ON's ``ent_links.txt`` / ``rel_links.txt`` for MKG-W; otherwise names come from the keys;
- optional ``descriptions.tsv`` and ``images/<entity id>/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dhns.data.errors import DataError
from dhns.data.kg import KnowledgeGraph
from dhns.data.validate import (
    NO_TEST,
    check_count,
    check_id_range,
    derive_name,
    empty_valid_warning,
    find_image_dirs,
    finish_graph,
    local_name,
    nonblank,
    parse_int_rows,
    read_count_header,
    read_descriptions,
    read_lines,
    read_names_tsv,
)

MARKER = "train2id.txt"


def read_key2id(path: Path, what: str) -> list[str]:
    """``entity2id.txt``-style file -> keys indexed by id (ids must be exactly 0..N-1)."""
    lines = read_lines(path)
    count = read_count_header(path, lines)
    numbers, texts = nonblank(lines, start=1)
    check_count(path, count, len(texts))
    keys: list[str | None] = [None] * count
    seen: dict[str, int] = {}
    for number, text in zip(numbers, texts, strict=True):
        # rsplit: the id is the last field; a key with inner spaces still parses.
        fields = text.rsplit(None, 1)
        if len(fields) != 2:
            raise DataError(path, f"expected 2 fields (key id), got {len(fields)}", line=number)
        key, sid = fields
        try:
            i = int(sid)
        except ValueError:
            raise DataError(path, f"not an integer id: {sid!r}", line=number) from None
        if not 0 <= i < count:
            raise DataError(
                path, f"{what} id {i} out of range (valid ids are 0..{count - 1})", line=number
            )
        if key in seen:
            raise DataError(
                path, f"duplicate key {key!r} (first on line {seen[key]})", line=number
            )
        if keys[i] is not None:
            raise DataError(path, f"duplicate {what} id {i}", line=number)
        seen[key] = number
        keys[i] = key
    return keys  # type: ignore[return-value]  # count matches and ids are unique: no gaps


def read_triples2id(path: Path, num_entities: int, num_relations: int) -> np.ndarray:
    """``h t r`` file -> ``(n, 3)`` int64 ``(h, r, t)`` array, fully range-checked."""
    lines = read_lines(path)
    count = read_count_header(path, lines)
    numbers, texts = nonblank(lines, start=1)
    check_count(path, count, len(texts))
    raw = parse_int_rows(path, numbers, texts, 3, "head tail relation")
    # One vectorised check; the first bad row (in file order) is then reported precisely.
    bad = (raw[:, :2] < 0).any(1) | (raw[:, :2] >= num_entities).any(1)
    bad |= (raw[:, 2] < 0) | (raw[:, 2] >= num_relations)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row_numbers = [numbers[i]]
        h, t, r = (int(x) for x in raw[i])
        if not 0 <= h < num_entities:
            check_id_range(path, row_numbers, raw[i : i + 1, 0], num_entities, "head entity")
        if not 0 <= t < num_entities:
            check_id_range(path, row_numbers, raw[i : i + 1, 1], num_entities, "tail entity")
        check_id_range(path, row_numbers, raw[i : i + 1, 2], num_relations, "relation")
    return raw[:, [0, 2, 1]]


def read_categories(path: Path, test_htr: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """``test2id_all.txt`` -> ``(n_test,)`` categories, or ``None`` and a warning on mismatch."""
    lines = read_lines(path)
    count = read_count_header(path, lines)
    numbers, texts = nonblank(lines, start=1)
    check_count(path, count, len(texts))
    rows = parse_int_rows(
        path, numbers, [t.replace("\t", " ") for t in texts], 4, "category<TAB>head tail relation"
    )
    check_id_range(path, numbers, rows[:, 0], 4, "category")
    if rows.shape[0] != test_htr.shape[0] or not np.array_equal(rows[:, 1:], test_htr):
        return None, (
            f"{path.name} does not list the test triples in test2id.txt order; "
            "test categories will be computed from train instead"
        )
    return rows[:, 0], None


def _entity_names(directory: Path, keys: list[str], warnings: list[str]) -> list[str]:
    names: list[str | None] = [None] * len(keys)
    if (directory / "entity_names.tsv").is_file():
        names = read_names_tsv(directory / "entity_names.tsv", keys, warnings)
    elif (directory / "ent_links.txt").is_file():
        # K-ON's MKG-W map: dbpedia-uri<TAB>wikidata-uri. Keys are the Wikidata URIs.
        path = directory / "ent_links.txt"
        by_key = {k: i for i, k in enumerate(keys)}
        numbers, texts = nonblank(read_lines(path))
        for number, text in zip(numbers, texts, strict=True):
            fields = text.split("\t")
            if len(fields) != 2:
                raise DataError(path, f"expected 2 tab-separated fields, got {len(fields)}", number)
            i = by_key.get(fields[1].strip())
            if i is not None:
                names[i] = derive_name(fields[0])
    missing = sum(n is None for n in names)
    if missing and missing < len(keys):
        warnings.append(f"{missing} entities have no name in the names file; derived from keys")
    return [n if n is not None else derive_name(k) for n, k in zip(names, keys, strict=True)]


def _relation_names(directory: Path, keys: list[str], warnings: list[str]) -> list[str]:
    names: list[str | None] = [None] * len(keys)
    if (directory / "relation_names.tsv").is_file():
        names = read_names_tsv(directory / "relation_names.tsv", keys, warnings)
    elif (directory / "rel_links.txt").is_file():
        # K-ON: the English label of relation id i on line i+1.
        labels = [ln.strip() for ln in read_lines(directory / "rel_links.txt")]
        if len(labels) == len(keys):
            names = [lb or None for lb in labels]
        else:
            warnings.append(
                f"rel_links.txt has {len(labels)} lines for {len(keys)} relations; ignored"
            )
    return [
        n if n is not None else derive_name(k, relation=True)
        for n, k in zip(names, keys, strict=True)
    ]


def load_openke(
    directory: Path, name: str, clean_valid: bool = True
) -> tuple[KnowledgeGraph, list[str]]:
    """Load and validate an OpenKE-layout folder. Returns the graph and warning strings."""
    warnings: list[str] = []
    entity_keys = read_key2id(directory / "entity2id.txt", "entity")
    relation_keys = read_key2id(directory / "relation2id.txt", "relation")
    n, r = len(entity_keys), len(relation_keys)
    splits = {
        s: read_triples2id(directory / f"{s}2id.txt", n, r) for s in ("train", "valid", "test")
    }
    if not len(splits["train"]):
        raise DataError(directory / "train2id.txt", "no training triples")
    if not len(splits["test"]):
        raise DataError(directory / "test2id.txt", NO_TEST)
    if not len(splits["valid"]):
        warnings.append(empty_valid_warning("valid2id.txt"))
    categories = None
    cat_path = directory / "test2id_all.txt"
    if cat_path.is_file():
        cats, msg = read_categories(cat_path, splits["test"][:, [0, 2, 1]])
        if msg:
            warnings.append(msg)
        elif cats is not None:
            categories = torch.from_numpy(cats.copy())

    entity_names = _entity_names(directory, entity_keys, warnings)
    relation_names = _relation_names(directory, relation_keys, warnings)

    descriptions: list[str | None] = [None] * n
    if (directory / "descriptions.tsv").is_file():
        # Match by key, then by readable name, then by URI local name (e.g. "Anarchism").
        aliases = [entity_keys, entity_names, [local_name(k) for k in entity_keys]]
        for i, d in read_descriptions(directory / "descriptions.tsv", aliases, warnings).items():
            descriptions[i] = d
    image_dirs = find_image_dirs(directory / "images", [str(i) for i in range(n)])

    kg, split_msgs = finish_graph(name, entity_keys, entity_names, relation_keys,
                                  relation_names, splits, clean_valid, descriptions,
                                  image_dirs, categories)
    warnings += split_msgs
    return kg, warnings
