"""The in-memory knowledge graph every other module consumes, and its on-disk form.

Triples are ``LongTensor`` of shape ``(n, 3)`` with columns ``(head, relation, tail)``,
whatever order the source file used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dhns.data.vocabulary import Vocabulary
from dhns.io import atomic_torch_save
from dhns.io import atomic_write as _atomic

CATEGORY_NAMES = ("1-1", "1-n", "n-1", "n-n")


@dataclass
class KnowledgeGraph:
    """A multimodal KG split into train/valid/test.

    Attributes:
        name: dataset name, e.g. ``"DB15K"``.
        entity_keys: ``N`` source identifiers (URI, QID, ...), index = entity id.
        entity_names: ``N`` human-readable names (used for text features and ``predict``).
        relation_keys / relation_names: the same for the ``R`` relations.
        train, valid, test: ``(n, 3)`` int64 triples ``(h, r, t)``.
        descriptions: ``N`` entries, ``None`` where an entity has no description.
        image_dirs: ``N`` entries, a folder of image files or ``None``.
        test_categories: ``(n_test,)`` int64 in 0..3 (``CATEGORY_NAMES``) or ``None``
            to compute them from train.
    """

    name: str
    entity_keys: list[str]
    entity_names: list[str]
    relation_keys: list[str]
    relation_names: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    descriptions: list[str | None] = field(default_factory=list)
    image_dirs: list[str | None] = field(default_factory=list)
    test_categories: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.entity_keys)
        if not self.descriptions:
            self.descriptions = [None] * n
        if not self.image_dirs:
            self.image_dirs = [None] * n

    @property
    def num_entities(self) -> int:
        return len(self.entity_keys)

    @property
    def num_relations(self) -> int:
        return len(self.relation_keys)

    def vocabulary(self) -> Vocabulary:
        """The fingerprint of the ordered entity and relation keys (what the ids mean)."""
        return Vocabulary.of(self.name, self.entity_keys, self.relation_keys)

    def all_triples(self) -> torch.Tensor:
        """``(n_train + n_valid + n_test, 3)``: the filter set of the evaluator."""
        return torch.cat([self.train, self.valid, self.test])

    def save(self, directory: str | Path) -> None:
        """Write ``triples.pt``, ``entities.tsv`` and ``relations.tsv`` atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            "name": self.name,
            "train": self.train,
            "valid": self.valid,
            "test": self.test,
            "test_categories": self.test_categories,
        }
        atomic_torch_save(directory / "triples.pt", tensors)
        columns = zip(self.entity_keys, self.entity_names, self.descriptions, self.image_dirs,
                      strict=True)
        rows = [[i, k, n, d or "", img or ""] for i, (k, n, d, img) in enumerate(columns)]
        _atomic(directory / "entities.tsv",
                lambda p: _write_tsv(p, ["id", "key", "name", "description", "image_dir"], rows))
        rel_rows = [[i, k, n] for i, (k, n) in
                    enumerate(zip(self.relation_keys, self.relation_names, strict=True))]
        _atomic(directory / "relations.tsv",
                lambda p: _write_tsv(p, ["id", "key", "name"], rel_rows))

    @classmethod
    def load(cls, directory: str | Path) -> KnowledgeGraph:
        """Read what :meth:`save` wrote (``FileNotFoundError`` naming the folder if absent)."""
        directory = Path(directory)
        if not (directory / "triples.pt").exists():
            raise FileNotFoundError(f"{directory}: not prepared yet (run `dhns prepare`)")
        tensors = torch.load(directory / "triples.pt", weights_only=True)
        ents = _read_tsv(directory / "entities.tsv")
        rels = _read_tsv(directory / "relations.tsv")
        return cls(
            name=tensors["name"],
            entity_keys=[r[1] for r in ents],
            entity_names=[r[2] for r in ents],
            relation_keys=[r[1] for r in rels],
            relation_names=[r[2] for r in rels],
            train=tensors["train"],
            valid=tensors["valid"],
            test=tensors["test"],
            descriptions=[r[3] or None for r in ents],
            image_dirs=[r[4] or None for r in ents],
            test_categories=tensors["test_categories"],
        )

    def summary(self) -> dict:
        return {
            "name": self.name,
            "entities": self.num_entities,
            "relations": self.num_relations,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "with_description": sum(d is not None for d in self.descriptions),
            "with_images": sum(d is not None for d in self.image_dirs),
        }


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _read_tsv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return [row for row in reader]
