"""Shared parsing and checking helpers for the dataset loaders.

Everything here either returns clean arrays or raises :class:`DataError` naming the file and
the 1-based line, so a user sees ``train2id.txt:17: expected 3 fields, got 2`` instead of a
traceback. Split-level problems that do not stop training (duplicates, overlaps, entities
unseen in train) become warning strings instead.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

import numpy as np
import torch

from dhns.data.errors import DataError
from dhns.data.kg import KnowledgeGraph
from dhns.errors import UserError

SPLITS = ("train", "valid", "test")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: how many names a warning about unseen entities / relations quotes
NAMES_SHOWN = 5


# --------------------------------------------------------------------------- reading


def read_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 text file (line ``i`` of the file is ``result[i - 1]``).

    A UTF-8 byte-order mark at the start (Excel and Notepad write one) is dropped, so it
    never becomes part of the first key (a phantom ``'\\ufeffent_18'`` entity).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "required file is missing") from None
    except IsADirectoryError:
        raise DataError(path, "expected a file, found a directory") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(path, "not valid UTF-8 text", line=line) from None
    # Only \n-style breaks count as lines (str.splitlines would also split on \x1c, \u2028...).
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def nonblank(lines: list[str], start: int = 0) -> tuple[list[int], list[str]]:
    """``(line_numbers, texts)`` of the non-blank lines from index ``start`` (1-based numbers)."""
    numbers = [i + 1 for i in range(start, len(lines)) if lines[i].strip()]
    return numbers, [lines[i - 1] for i in numbers]


def read_count_header(path: Path, lines: list[str]) -> int:
    """The record count on line 1 of an OpenKE file."""
    if not lines or not lines[0].strip():
        raise DataError(path, "empty file: expected the record count on line 1", line=1)
    head = lines[0].split()
    if len(head) != 1:
        raise DataError(path, f"expected the record count alone on line 1, got {lines[0]!r}", 1)
    try:
        count = int(head[0])
    except ValueError:
        raise DataError(path, f"record count is not an integer: {head[0]!r}", line=1) from None
    if count < 0:
        raise DataError(path, f"record count is negative: {count}", line=1)
    return count


def check_count(path: Path, declared: int, found: int) -> None:
    if declared != found:
        raise DataError(
            path, f"header says {declared} records but the file has {found}", line=1
        )


def parse_int_rows(
    path: Path, numbers: list[int], texts: list[str], ncols: int, what: str
) -> np.ndarray:
    """Whitespace-separated integer rows -> ``(n, ncols)`` int64 array.

    The fast path converts everything in one numpy call; only on failure do we walk the
    lines again to find (and report) the first bad one.
    """
    rows = [t.split() for t in texts]
    for number, row in zip(numbers, rows, strict=True):
        if len(row) != ncols:
            raise DataError(
                path, f"expected {ncols} fields ({what}), got {len(row)}", line=number
            )
    if not rows:
        return np.zeros((0, ncols), dtype=np.int64)
    try:
        return np.array(rows, dtype=np.int64)
    except (ValueError, OverflowError):
        for number, row in zip(numbers, rows, strict=True):
            for tok in row:
                try:
                    value = int(tok)
                except ValueError:
                    raise DataError(path, f"not an integer id: {tok!r}", line=number) from None
                if not _INT64_MIN <= value <= _INT64_MAX:
                    shown = tok if len(tok) <= 30 else f"{tok[:12]}...{tok[-6:]}"
                    raise DataError(
                        path, f"id {shown} out of range (does not fit in a 64-bit integer)",
                        line=number,
                    ) from None
        raise DataError(path, "integer out of range") from None


def check_id_range(
    path: Path, numbers: list[int], values: np.ndarray, limit: int, what: str
) -> None:
    """Raise on the first value outside ``[0, limit)``; ``values`` is aligned with ``numbers``."""
    bad = np.flatnonzero((values < 0) | (values >= limit))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            path,
            f"{what} id {int(values[i])} out of range (valid ids are 0..{limit - 1})",
            line=numbers[i],
        )


# --------------------------------------------------------------------------- names


_NAMESPACES = ("/resource/", "/entity/", "/ontology/", "/property/")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def local_name(key: str) -> str:
    """The last segment of a URI-like key: ``<http://x/y/Anarchism>`` -> ``Anarchism``."""
    k = key.strip()
    if k.startswith("<") and k.endswith(">"):
        k = k[1:-1]
    if "://" in k or k.startswith(("urn:", "_:")):
        # The fragment wins over the path (rdf-schema#seeAlso -> seeAlso); after a known
        # namespace marker the rest is the name, slashes included (dbpedia "HIV/AIDS").
        if "#" in k:
            tail = k.rsplit("#", 1)[-1]
        else:
            marker = next((m for m in _NAMESPACES if m in k), None)
            tail = k.split(marker, 1)[1] if marker else k.rstrip("/").rsplit("/", 1)[-1]
        if tail:
            k = tail
    return k


def derive_name(key: str, relation: bool = False) -> str:
    """A readable name from a key: URI local name, ``_`` -> space.

    Relation names additionally split camelCase and are lowercased (``wasBornIn`` ->
    ``was born in``), matching the ``relation_names.tsv`` files shipped with the benchmarks.
    """
    name = local_name(key)
    if relation:
        name = _CAMEL.sub(" ", name).lower()
    name = " ".join(name.replace("_", " ").split())
    return name or key


def read_names_tsv(path: Path, keys: list[str], warnings: list[str]) -> list[str | None]:
    """``id<TAB>...<TAB>name`` with a header row -> names by id (last column is the name).

    Rows whose id is unknown are reported as one warning; ids without a row stay ``None``;
    a second row for the same id is an error (which one is meant is anyone's guess).
    """
    lines = read_lines(path)
    names: list[str | None] = [None] * len(keys)
    first_line: dict[int, int] = {}
    unknown = 0
    numbers, texts = nonblank(lines, start=1)
    for number, text in zip(numbers, texts, strict=True):
        fields = text.split("\t")
        if len(fields) < 2:
            raise DataError(path, f"expected id<TAB>...<TAB>name, got {len(fields)} field", number)
        try:
            i = int(fields[0])
        except ValueError:
            raise DataError(path, f"not an integer id: {fields[0]!r}", line=number) from None
        if not 0 <= i < len(keys):
            unknown += 1
            continue
        if i in first_line:
            raise DataError(path, f"id {i} already named at line {first_line[i]}", line=number)
        first_line[i] = number
        name = fields[-1].strip()
        names[i] = name or None
    if unknown:
        warnings.append(f"{path.name}: {unknown} rows with ids outside 0..{len(keys) - 1} ignored")
    return names


# --------------------------------------------------------------------------- side files


def read_descriptions(
    path: Path, aliases: list[list[str]], warnings: list[str]
) -> dict[int, str]:
    """``key_or_name<TAB>description`` (no header) -> ``{entity id: description}``.

    ``aliases`` are per-entity lists of identifiers (keys, names, ...), earlier lists taking
    precedence. Unknown keys are a warning, not an error: a description file is often
    shared between versions of a KG.
    """
    lookup: dict[str, int] = {}
    for names in reversed(aliases):
        lookup.update((n, i) for i, n in enumerate(names))
    out: dict[int, str] = {}
    unknown = 0
    numbers, texts = nonblank(read_lines(path))
    for number, text in zip(numbers, texts, strict=True):
        if "\t" not in text:
            raise DataError(path, "expected key<TAB>description", line=number)
        key, desc = text.split("\t", 1)
        i = lookup.get(key.strip())
        if i is None:
            unknown += 1
            continue
        desc = desc.strip()
        if desc:
            out[i] = desc
    if unknown:
        warnings.append(f"{path.name}: {unknown} descriptions for unknown entities ignored")
    return out


def find_image_dirs(images: Path, folder_names: list[str]) -> list[str | None]:
    """``images/<folder_names[i]>/`` as an absolute path when it holds at least one file."""
    out: list[str | None] = [None] * len(folder_names)
    if not images.is_dir():
        return out
    # One scandir of images/ instead of N stat calls on absent folders.
    present = {e.name: e.path for e in os.scandir(images) if e.is_dir()}
    for i, folder in enumerate(folder_names):
        p = present.get(folder)
        if p is None:
            continue
        with os.scandir(p) as it:
            if any(e.is_file() for e in it):
                out[i] = str(Path(p).resolve())
    return out


# --------------------------------------------------------------------------- split checks

#: the loaders' error for an empty test file: there would be nothing to evaluate
NO_TEST = "no test triples: nothing to evaluate on"


def empty_valid_warning(file: str) -> str:
    """An empty valid file is only a warning: ``data.min_valid`` can fill it from train
    (:func:`top_up_valid`, which raises when it cannot)."""
    return (f"{file} has no triples: the prepare stage holds out data.min_valid training "
            "triples for validation instead (an error when data.min_valid is 0)")



def _encode(triples: np.ndarray, num_entities: int, num_relations: int) -> np.ndarray:
    """One int64 per ``(h, r, t)`` row, for fast set operations."""
    n, r = np.int64(max(num_entities, 1)), np.int64(max(num_relations, 1))
    return (triples[:, 0] * r + triples[:, 1]) * n + triples[:, 2]


def split_warnings(
    splits: dict[str, np.ndarray], num_entities: int, num_relations: int
) -> list[str]:
    """Duplicate triples within a split and overlap between splits, as warning strings.

    ``splits`` maps ``train``/``valid``/``test`` to ``(n, 3)`` ``(h, r, t)`` arrays.
    """
    warnings = []
    codes = {s: _encode(a, num_entities, num_relations) for s, a in splits.items()}
    uniq = {s: np.unique(c) for s, c in codes.items()}
    for s in SPLITS:
        dup = len(codes[s]) - len(uniq[s])
        if dup:
            warnings.append(
                f"{s}: {dup} duplicate rows ({len(codes[s])} rows, {len(uniq[s])} unique triples)"
            )
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        both = len(np.intersect1d(uniq[a], uniq[b], assume_unique=True))
        if both:
            warnings.append(f"{a}/{b}: {both} unique triples occur in both splits")
    return warnings


def quote_names(names: list[str], total: int | None = None) -> str:
    """``'a', 'b', 'c' and 4 more``: the first :data:`NAMES_SHOWN` names of ``total``."""
    total = len(names) if total is None else total
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    return shown + (f" and {total - NAMES_SHOWN} more" if total > NAMES_SHOWN else "")


def unseen_warnings(
    splits: dict[str, np.ndarray],
    num_entities: int,
    num_relations: int | None = None,
    entity_keys: list[str] | None = None,
    relation_keys: list[str] | None = None,
) -> list[str]:
    """Valid/test entities and relations that never occur in train, as warning strings.

    The model cannot learn an embedding for them: such triples are ranked at random. Each
    warning gives the count and, given the keys, the first few names (in id order).
    """
    tr = splits["train"]
    kinds = [("entities", [0, 2], num_entities, entity_keys, "involve them")]
    if num_relations is not None:
        kinds.append(("relations", [1], num_relations, relation_keys, "use them"))
    warnings = []
    for s in ("valid", "test"):
        a = splits[s]
        if not len(a):
            continue
        for what, cols, count, keys, verb in kinds:
            seen = np.zeros(count, dtype=bool)
            seen[tr[:, cols].reshape(-1)] = True
            ids = np.unique(a[:, cols].reshape(-1))
            new = ids[~seen[ids]]
            if not len(new):
                continue
            rows = int((~seen[a[:, cols]]).any(1).sum())
            msg = f"{s}: {len(new)} {what} never seen in train ({rows} triples {verb})"
            if keys is not None:
                msg += ": " + quote_names([keys[i] for i in new[:NAMES_SHOWN]], len(new))
            warnings.append(msg)
    return warnings


def clean_valid(
    valid: np.ndarray, test: np.ndarray, num_entities: int, num_relations: int,
    train: np.ndarray | None = None,
) -> tuple[np.ndarray, str | None]:
    """Deduplicate valid (first occurrence kept, order preserved), drop triples in test and,
    given ``train``, triples in train.

    Why: DB15K's valid file repeats rows, shares 824 triples with test (early stopping on it
    would select on test data) and 6,584 with train (a model that memorises train ranks those
    first, so they measure nothing). Returns the cleaned ``(n', 3)`` array and a warning
    (``None`` when nothing changed).
    """
    codes = _encode(valid, num_entities, num_relations)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(len(valid), dtype=bool)
    keep[first] = True
    n_unique = int(keep.sum())
    in_test = np.isin(codes, _encode(test, num_entities, num_relations))
    dropped_test = int((keep & in_test).sum())
    keep &= ~in_test
    dropped_train = 0
    if train is not None:
        in_train = np.isin(codes, _encode(train, num_entities, num_relations))
        dropped_train = int((keep & in_train).sum())
        keep &= ~in_train
    if n_unique == len(valid) and dropped_test == dropped_train == 0:
        return valid, None
    msg = (
        f"valid cleaned: {len(valid)} rows -> {n_unique} unique triples -> {int(keep.sum())} "
        f"after dropping {dropped_test} that are also in test"
        + (f" and {dropped_train} that are also in train" if train is not None else "")
        + " (clean_valid=True)"
    )
    return valid[keep], msg


def top_up_valid(train: torch.Tensor, valid: torch.Tensor, min_valid: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """Move random training triples to valid until valid has ``min_valid`` triples.

    For a split whose clean validation set is too small to select a checkpoint on (DB15K: 73
    triples once train and test copies are dropped). Only triples whose head and tail keep at
    least one other training triple are moved, so no entity loses all its training evidence.
    Returns ``(train, valid, message or None)``; nothing changes when valid is big enough.

    Raises:
        UserError: when valid would stay empty (``min_valid`` 0, or nothing can be moved):
            training could not select a checkpoint or stop early.
    """
    need = min_valid - len(valid)
    if need <= 0:
        if not len(valid):
            raise UserError(
                "the valid split is empty and data.min_valid is 0: nothing to select a "
                "checkpoint on (set data.min_valid > 0 to hold out training triples, or add "
                "validation triples)"
            )
        return train, valid, None
    order = torch.randperm(len(train), generator=generator)
    degree = torch.bincount(torch.cat([train[:, 0], train[:, 2]]))
    moved: list[int] = []
    for i in order.tolist():
        h, t = int(train[i, 0]), int(train[i, 2])
        if h != t and degree[h] > 1 and degree[t] > 1:
            degree[h] -= 1
            degree[t] -= 1
            moved.append(i)
            if len(moved) == need:
                break
    if not len(valid) and not moved:
        raise UserError(
            "the valid split is empty and no training triple can be held out for it (each "
            "would leave an entity without training triples): add validation triples"
        )
    mask = torch.zeros(len(train), dtype=torch.bool)
    mask[moved] = True
    msg = (f"valid topped up from {len(valid)} to {len(valid) + len(moved)} triples with "
           f"{len(moved)} held out of train (data.min_valid={min_valid}); train "
           f"{len(train)} -> {len(train) - len(moved)}")
    return train[~mask], torch.cat([valid, train[mask]]), msg


def to_tensor(triples: np.ndarray) -> torch.Tensor:
    """``(n, 3)`` int64 tensor (a copy, so the numpy buffer can be freed)."""
    return torch.from_numpy(np.ascontiguousarray(triples, dtype=np.int64)).clone()


def finish_splits(
    splits: dict[str, np.ndarray], num_entities: int, num_relations: int, clean: bool,
    entity_keys: list[str] | None = None, relation_keys: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Split warnings, optional valid cleaning, then unseen entity / relation warnings (on what
    is kept; ``entity_keys`` / ``relation_keys`` name the first few)."""
    warnings = split_warnings(splits, num_entities, num_relations)
    if clean:
        valid, msg = clean_valid(splits["valid"], splits["test"], num_entities, num_relations,
                                 train=splits["train"])
        if msg:
            splits = {**splits, "valid": valid}
            warnings.append(msg)
    warnings += unseen_warnings(splits, num_entities, num_relations, entity_keys, relation_keys)
    return splits, warnings


def finish_graph(
    name: str,
    entity_keys: list[str],
    entity_names: list[str],
    relation_keys: list[str],
    relation_names: list[str],
    splits: dict[str, np.ndarray],
    clean: bool,
    descriptions: list[str | None],
    image_dirs: list[str | None],
    test_categories: torch.Tensor | None = None,
) -> tuple[KnowledgeGraph, list[str]]:
    """The loaders' common last step: :func:`finish_splits`, then the :class:`KnowledgeGraph`."""
    splits, warnings = finish_splits(splits, len(entity_keys), len(relation_keys), clean,
                                     entity_keys, relation_keys)
    kg = KnowledgeGraph(
        name=name,
        entity_keys=entity_keys,
        entity_names=entity_names,
        relation_keys=relation_keys,
        relation_names=relation_names,
        train=to_tensor(splits["train"]),
        valid=to_tensor(splits["valid"]),
        test=to_tensor(splits["test"]),
        descriptions=descriptions,
        image_dirs=image_dirs,
        test_categories=test_categories,
    )
    return kg, warnings
