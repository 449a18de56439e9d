"""Feature tables computed elsewhere (MMKGC's ``<DS>-visual.pth`` / ``<DS>-textual.pth``)."""

from __future__ import annotations

from pathlib import Path

import torch

from dhns.data.vocabulary import Vocabulary, check_vocabulary
from dhns.errors import UserError
from dhns.features.table import FeatureTable


def load_precomputed(path: str | Path, num_entities: int,
                     vocabulary: Vocabulary | None = None,
                     graph_source: str | Path = "the dataset") -> FeatureTable:
    """Load a precomputed ``(N, d)`` feature table and check it against the KG.

    Accepted contents: a tensor ``(N, d)`` in entity-id order where an all-zero row means
    "missing" (the MMKGC convention), a ``{"weight": tensor}`` embedding state dict, or a
    dict written by :meth:`FeatureTable.save` (whose own mask is kept).

    With ``vocabulary`` (the KG's, read from ``graph_source``) the table gets that
    vocabulary: rows of a file from elsewhere follow the KG's entity ids by contract, so only
    a table that records a vocabulary of its own can be, and is, checked against it.

    Raises:
        UserError: not 2-D, wrong number of rows, or non-finite values; the message names
            the file, and the expected shape or the first bad row.
        VocabularyError: a dhns table recording another graph's vocabulary.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such precomputed feature file") from None
    mask = None
    meta: dict = {}
    if isinstance(obj, dict) and "features" in obj and "mask" in obj:
        try:
            table = FeatureTable.from_dict(obj)
        except ValueError as exc:  # the file's features and mask do not fit together
            raise UserError(f"{path}: {exc}") from None
        if vocabulary is not None and table.vocabulary is not None:
            check_vocabulary(path, table.vocabulary, vocabulary, graph_source,
                             "point the precomputed option at this dataset's features")
        tensor, mask, meta = table.features, table.mask, dict(table.meta)
    elif isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("weight"), torch.Tensor):
        tensor = obj["weight"]
    elif isinstance(obj, torch.Tensor):
        tensor = obj
    else:
        raise UserError(
            f"{path}: expected a (N, d) tensor or a FeatureTable dict, got {type(obj).__name__}"
        )
    if tensor.dim() != 2:
        raise UserError(
            f"{path}: expected a 2-D tensor ({num_entities}, d), got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] != num_entities:
        raise UserError(
            f"{path}: expected shape ({num_entities}, d) (one row per entity), "
            f"got {tuple(tensor.shape)}"
        )
    tensor = tensor.float()
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        count = int((~finite).sum())
        raise UserError(
            f"{path}: non-finite values (NaN/inf) in row {bad} (entity id {bad}); "
            f"{count} bad row(s) in total"
        )
    if mask is None:
        mask = (tensor != 0).any(dim=1)
    meta.update({
        "source": str(path),
        "dim": int(tensor.shape[1]),
        "num_entities": num_entities,
        "with_modality": int(mask.sum()),
    })
    meta.setdefault("model", f"precomputed:{path.name}")
    return FeatureTable(features=tensor, mask=mask, meta=meta, vocabulary=vocabulary)
