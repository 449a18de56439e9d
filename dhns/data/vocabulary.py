"""A graph's vocabulary fingerprint: which entity and relation each id stands for.

Everything trained or computed on a graph (KGE and diffusion checkpoints, feature tables) is
indexed by entity and relation id, and ids are only positions: a TSV dataset numbers entities
in the order they first appear, so reordering ``train.tsv`` renumbers them with the counts
unchanged. Such artifacts therefore record the :class:`Vocabulary` they were built on, and
:func:`check_vocabulary` refuses to pair them with a graph whose ids mean something else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dhns.errors import UserError

#: Hex digits of the SHA-256 shown in messages (the comparison uses all 64).
SHOWN_DIGITS = 12


class VocabularyError(UserError):
    """An artifact built on other entity or relation ids than the graph it is used with."""


@dataclass(frozen=True)
class Vocabulary:
    """The fingerprint of a graph's ordered entity and relation keys.

    Attributes:
        dataset: the graph's name, for messages only (not compared).
        entities, relations: the counts ``N`` and ``R``.
        sha256: hex SHA-256 of the counts and the keys in id order (see :func:`fingerprint`).
    """

    dataset: str
    entities: int
    relations: int
    sha256: str

    @classmethod
    def of(cls, dataset: str, entity_keys: list[str], relation_keys: list[str]) -> Vocabulary:
        return cls(dataset, len(entity_keys), len(relation_keys),
                   fingerprint(entity_keys, relation_keys))

    def matches(self, other: Vocabulary) -> bool:
        """Same ids for the same keys; the dataset name may differ (a renamed copy)."""
        return (self.entities, self.relations, self.sha256) == (
            other.entities, other.relations, other.sha256)

    def describe(self) -> str:
        """``"DB15K (14,951 entities, 279 relations, vocabulary 3f2a9c0b81d4)"``."""
        return (f"{self.dataset} ({self.entities:,} entities, {self.relations:,} relations, "
                f"vocabulary {self.sha256[:SHOWN_DIGITS]})")

    def to_dict(self) -> dict[str, Any]:
        """Plain str/int dict, safe for ``torch.load(weights_only=True)`` and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Any) -> Vocabulary | None:
        """The vocabulary :meth:`to_dict` wrote, or None for anything else (an older file)."""
        if not isinstance(obj, dict):
            return None
        try:
            vocab = cls(str(obj["dataset"]), int(obj["entities"]), int(obj["relations"]),
                        str(obj["sha256"]))
        except (KeyError, TypeError, ValueError):
            return None
        return vocab


def fingerprint(entity_keys: list[str], relation_keys: list[str]) -> str:
    """Hex SHA-256 of ``{"entities": N, "relations": R, "entity_keys": [...],
    "relation_keys": [...]}`` as compact JSON.

    JSON delimits every key, so no two different key lists hash alike by concatenation; the
    lists are in id order, so any renumbering changes the hash.
    """
    text = json.dumps({"entities": len(entity_keys), "relations": len(relation_keys),
                       "entity_keys": list(entity_keys), "relation_keys": list(relation_keys)},
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_vocabulary(artifact: str | Path, recorded: Vocabulary | None, graph: Vocabulary,
                     graph_source: str | Path, remedy: str) -> None:
    """Raise :class:`VocabularyError` unless ``artifact`` was built on ``graph``'s ids.

    Args:
        artifact: the checkpoint or feature file, named first in the message.
        recorded: the vocabulary the artifact carries; None when it carries none.
        graph: the vocabulary of the graph it is about to be used with.
        graph_source: where that graph was read from (a dataset folder, artifacts/prepared).
        remedy: what to do about a mismatch, e.g. ``"retrain it or use the matching
            dataset"``.

    The message is one line naming both sides, e.g. ``model.pt: built on DB15K (14,951
    entities, 279 relations, vocabulary 3f2a9c0b81d4) but data/x is x (14,951 entities, 279
    relations, vocabulary 91bc07d2e5a3): entity or relation ids differ; retrain ...``.
    """
    if recorded is None:
        # Refused, not trusted: an unchecked artifact is exactly the silent failure this guards
        # against, and the pipeline rebuilds every artifact anyway.
        raise VocabularyError(f"{artifact}: has no vocabulary fingerprint (written by an older "
                              f"dhns), so its ids cannot be checked against {graph_source}; "
                              "rebuild it by rerunning the stage that wrote it")
    if not recorded.matches(graph):
        raise VocabularyError(f"{artifact}: built on {recorded.describe()} but {graph_source} "
                              f"is {graph.describe()}: entity or relation ids differ; {remedy}")
