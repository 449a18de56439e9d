"""The Python API for notebooks and scripts: load a trained KGE with its dataset, and ask it
for the most plausible tails or heads of a query, by names.

>>> import dhns                                                       # doctest: +SKIP
>>> model = dhns.load("artifacts/retrain/model.pt", "data/synthetic")  # doctest: +SKIP
>>> model.predict_tails("blue cone 262", "located near", k=3)         # doctest: +SKIP
[Prediction(rank=1, entity='blue cone 19', score=5.21, known=True), ...]

``tests/test_api.py`` runs these calls on a trained synthetic model. ``dhns predict`` is the
same code on the command line.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dhns.data.kg import KnowledgeGraph
from dhns.device import resolve_device
from dhns.errors import UserError
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import MultimodalKGE
from dhns.kge.scoring import Direction
from dhns.training.checkpoint import load_kge


@dataclass(frozen=True)
class Prediction:
    """One ranked candidate: ``known`` marks an answer true in train, valid or test."""

    rank: int
    entity: str
    score: float
    known: bool


class TrainedModel:
    """A KGE checkpoint bound to the graph whose ids it was trained on.

    ``kge`` is the :class:`~dhns.kge.model.MultimodalKGE` (eval mode), ``graph`` the
    :class:`~dhns.data.kg.KnowledgeGraph` (names, keys and every known triple), ``meta`` the
    checkpoint's provenance (dataset, params, training history), ``predictor`` the frozen
    ranking view (fused entity table computed once, so a query costs one scoring row).
    """

    def __init__(self, kge: MultimodalKGE, graph: KnowledgeGraph, meta: dict[str, Any],
                 warnings: Sequence[str] = ()) -> None:
        self.kge, self.graph, self.meta = kge, graph, meta
        self.warnings = list(warnings)  # what loading the dataset found (skipped lines, ...)
        self.predictor = kge.link_predictor()
        self.known = FilterIndex(graph.all_triples(), graph.num_relations)

    def entity_id(self, name: str) -> int:
        """The id of an entity given by name or key (exact, then case-insensitive)."""
        return resolve_name(name, self.graph.entity_names, self.graph.entity_keys, "entity")

    def relation_id(self, name: str) -> int:
        """The id of a relation given by name or key (exact, then case-insensitive)."""
        return resolve_name(name, self.graph.relation_names, self.graph.relation_keys,
                            "relation")

    @torch.inference_mode()
    def score_tails(self, heads: Sequence[str], relations: Sequence[str]) -> torch.Tensor:
        """``(B, N)`` scores of every entity as the tail of each ``(head, relation, ?)``."""
        h, r = self._ids(heads, self.entity_id), self._ids(relations, self.relation_id)
        return self.predictor.score_tails(h, r).float().cpu()

    @torch.inference_mode()
    def score_heads(self, relations: Sequence[str], tails: Sequence[str]) -> torch.Tensor:
        """``(B, N)`` scores of every entity as the head of each ``(?, relation, tail)``."""
        r, t = self._ids(relations, self.relation_id), self._ids(tails, self.entity_id)
        return self.predictor.score_heads(r, t).float().cpu()

    def predict_tails(self, head: str, relation: str, k: int = 10) -> list[Prediction]:
        """The ``k`` most plausible tails of ``(head, relation, ?)``, best first."""
        scores = self.score_tails([head], [relation])[0]
        anchor, r = self.entity_id(head), self.relation_id(relation)
        return self.ranked(scores, anchor, r, "tail", k)

    def predict_heads(self, relation: str, tail: str, k: int = 10) -> list[Prediction]:
        """The ``k`` most plausible heads of ``(?, relation, tail)``, best first."""
        scores = self.score_heads([relation], [tail])[0]
        anchor, r = self.entity_id(tail), self.relation_id(relation)
        return self.ranked(scores, anchor, r, "head", k)

    def known_answers(self, anchor: int, relation: int, direction: Direction) -> set[int]:
        """Ids true in some split for the query predicting ``direction`` (``"tail"``: of
        ``(anchor, relation, ?)``; ``"head"``: of ``(?, relation, anchor)``)."""
        _, answers = self.known.answers(torch.tensor([anchor]), torch.tensor([relation]),
                                        direction)
        return set(answers.tolist())

    def _ids(self, names: Sequence[str], resolve) -> torch.Tensor:
        if isinstance(names, str):
            raise TypeError("give a sequence of names (a list), not one string")
        return torch.tensor([resolve(n) for n in names], device=self.predictor.device)

    def ranked(self, scores: torch.Tensor, anchor: int, relation: int, direction: Direction,
               k: int) -> list[Prediction]:
        """The top ``k`` of one query's scores ``(N,)`` as predictions; ``anchor`` and
        ``direction`` as for :meth:`known_answers` (marks the known answers)."""
        if k < 1:
            raise UserError(f"k must be >= 1, got {k}")
        top = torch.topk(scores, min(k, len(scores)))
        known = self.known_answers(anchor, relation, direction)
        return [Prediction(rank, self.graph.entity_names[int(i)], float(s), int(i) in known)
                for rank, (s, i) in enumerate(zip(top.values, top.indices, strict=True), 1)]


def load(checkpoint: str | Path, dataset: str | Path, device: str = "cpu",
         fused: bool = False) -> TrainedModel:
    """A KGE checkpoint with the dataset it was trained on: a prepared folder
    (``artifacts/prepared``) or a raw dataset folder (``data/<name>``). Raises
    :class:`~dhns.data.vocabulary.VocabularyError` when their ids differ.

    ``fused``: rank with the ``torch.compile`` kernels (``kge.compile``; a one-off compile
    of some seconds, then much faster batches; falls back to eager with a warning)."""
    dataset = Path(dataset)
    warnings: list[str] = []
    if (dataset / "triples.pt").is_file():
        graph = KnowledgeGraph.load(dataset)
    else:
        from dhns.data import load_dataset

        graph, warnings = load_dataset(dataset)
    kge, meta = load_kge(checkpoint, resolve_device(device), graph.vocabulary(), dataset)
    if fused:
        from dhns.kge.build import compile_scoring

        compile_scoring(kge, True, resolve_device(device))
    return TrainedModel(kge, graph, meta, warnings)


def resolve_name(query: str, names: Sequence[str], keys: Sequence[str], what: str) -> int:
    """Index of ``query`` among names or keys: exact match first, then case-insensitive.

    Raises UserError when nothing (or more than one item) matches, with up to 3 close
    suggestions.
    """
    for match in (lambda s: s == query, lambda s: s.casefold() == query.casefold()):
        for column in (names, keys):
            hits = sorted({i for i, s in enumerate(column) if match(s)})
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                options = ", ".join(repr(keys[i]) for i in hits[:5])
                raise UserError(f"{what} {query!r} is ambiguous: give one of the keys {options}")
    folded: dict[str, str] = {}
    for s in list(names) + list(keys):
        folded.setdefault(s.casefold(), s)
    close = difflib.get_close_matches(query.casefold(), list(folded), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(folded[c]) for c in close)}?" if close else ""
    raise UserError(f"unknown {what} {query!r}{hint}")
