"""A stage's record, split in two files: ``metrics/<stage>.json`` and ``reports/<stage>.json``.

``dvc exp show`` makes a column of every value in every metrics file. A stage's whole record
(timings, peak memory, configuration echoes, per-epoch lists, per-side and per-category
detail) made hundreds of columns, so the metrics file keeps only the figures people compare
across runs, and the report (a plain DVC output, not a metric) holds the rest. Merging the
two gives the whole record back.

Standard library only: ``bench.summary`` and the data stages read records without torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

METRICS_DIR = "metrics"
REPORTS_DIR = "reports"


def split_record(record: Mapping[str, Any], keys: Iterable[str]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, report)``: the values of ``record`` named by ``keys``, and all the others.

    A key is a dotted path (``loss_gradients.start.share``); ``*`` matches any key at its
    level (``*.mrr``: the MRR of every model). A path that ends at a mapping keeps all of it.
    The two parts share no value, and :func:`merge_records` of them equals ``record``.
    """
    return _split(record, [key.split(".") for key in keys])


def _split(tree: Mapping[str, Any], paths: list[list[str]]) -> tuple[dict, dict]:
    kept: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in tree.items():
        below = [path[1:] for path in paths if path[0] in (key, "*")]
        if any(not path for path in below):
            kept[key] = value
        elif below and isinstance(value, Mapping) and value:
            inner_kept, inner_rest = _split(value, below)
            if inner_kept:
                kept[key] = inner_kept
            if inner_rest:
                rest[key] = inner_rest
        else:
            rest[key] = value
    return kept, rest


def merge_records(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``parts`` merged key by key, nested mappings recursively; on a clash of two
    non-mappings the later part wins."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge_records(merged[key], value)
            elif isinstance(value, Mapping):
                merged[key] = merge_records(value)  # a copy: the result shares no dict
            else:
                merged[key] = value
    return merged


def read_record(folder: str | Path, stage: str) -> dict[str, Any]:
    """The whole record of ``stage`` in the project folder ``folder``: its metrics file
    merged with its report. A missing file counts as empty, so a folder written before the
    split (everything in ``metrics/``) reads the same."""
    parts = []
    for sub in (METRICS_DIR, REPORTS_DIR):
        path = Path(folder) / sub / f"{stage}.json"
        if path.is_file():
            parts.append(json.loads(path.read_text()))
    return merge_records(*parts)
