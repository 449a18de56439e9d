"""The embedded synthetic dataset: determinism, typed relations, images, missing fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dhns.config import SyntheticConfig
from dhns.data import generate_synthetic, load_dataset

SMALL = SyntheticConfig(num_entities=200, num_types=4, num_relations=8, triples_per_relation=150,
                        missing_text=0.2, missing_image=0.25, image_size=24)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "synthetic"
    generate_synthetic(SMALL, out)
    return out


def test_same_seed_same_bytes(small: Path, tmp_path: Path) -> None:
    generate_synthetic(SMALL, tmp_path / "again")
    assert files(small) == files(tmp_path / "again")


def test_different_seed_differs(small: Path, tmp_path: Path) -> None:
    cfg = SyntheticConfig(**{**SMALL.__dict__, "seed": 1})
    generate_synthetic(cfg, tmp_path / "other")
    assert (small / "train.tsv").read_bytes() != (tmp_path / "other" / "train.tsv").read_bytes()


def test_loads_cleanly_with_splits(small: Path) -> None:
    kg, warnings = load_dataset(small)
    assert warnings == []  # no duplicates, no overlap, every valid/test entity in train
    assert kg.num_entities == SMALL.num_entities
    assert kg.num_relations == SMALL.num_relations
    total = len(kg.train) + len(kg.valid) + len(kg.test)
    assert total >= 0.9 * SMALL.num_relations * SMALL.triples_per_relation
    assert abs(len(kg.valid) - 0.1 * total) <= 1 and abs(len(kg.test) - 0.1 * total) <= 1
    meta = json.loads((small / "generator.json").read_text())
    assert meta["config"] == SMALL.__dict__


def test_relations_are_type_constrained(small: Path) -> None:
    meta = json.loads((small / "generator.json").read_text())
    types = {name: e["type"] for name, e in meta["entities"].items()}
    sig = {r["name"]: (r["head_type"], r["tail_type"]) for r in meta["relations"]}
    assert any(r["kind"] == "attribute" for r in meta["relations"])
    for split in ("train", "valid", "test"):
        for line in (small / f"{split}.tsv").read_text().splitlines():
            h, r, t = line.split("\t")
            assert (types[h], types[t]) == sig[r]


def test_attribute_relations_mostly_hold(small: Path) -> None:
    meta = json.loads((small / "generator.json").read_text())
    attr = {r["name"]: r["attribute"] for r in meta["relations"] if r["kind"] == "attribute"}
    ents = meta["entities"]
    held = total = 0
    for line in (small / "train.tsv").read_text().splitlines():
        h, r, t = line.split("\t")
        if r in attr:
            total += 1
            held += ents[h][attr[r]] == ents[t][attr[r]]
    assert total and held / total > 0.9


def test_images_and_missing_fractions(small: Path) -> None:
    kg, _ = load_dataset(small)
    n = kg.num_entities
    with_img = [d for d in kg.image_dirs if d is not None]
    assert len(with_img) == n - round(SMALL.missing_image * n)
    assert sum(d is None for d in kg.descriptions) == round(SMALL.missing_text * n)
    meta = json.loads((small / "generator.json").read_text())
    for d in with_img[:20]:
        img = Image.open(Path(d) / "0.png")
        assert img.size == (SMALL.image_size, SMALL.image_size) and img.mode == "RGB"
        name = Path(d).name
        assert meta["entities"][name]["colour"] in name  # names carry readable attributes
    desc = next(d for d in kg.descriptions if d)
    assert "It is a kind of" in desc


def test_ring_structure_tails_sit_at_the_mapped_position(tmp_path: Path) -> None:
    """``structure: ring``: a cluster relation's tail is one of the ``ring_spread`` entities of
    its type nearest to ``scale * position(h) + shift`` (mod 1), bar the noise share."""
    cfg = SyntheticConfig(**{**SMALL.__dict__, "structure": "ring", "ring_spread": 2})
    generate_synthetic(cfg, tmp_path / "ring")
    meta = json.loads((tmp_path / "ring" / "generator.json").read_text())
    ents = meta["entities"]
    per_type: dict[str, list[float]] = {}
    for e in ents.values():
        per_type.setdefault(e["type"], []).append(e["position"])
    rels = {r["name"]: r for r in meta["relations"] if r["kind"] == "cluster"}
    held = total = 0
    for line in (tmp_path / "ring" / "train.tsv").read_text().splitlines():
        h, r, t = line.split("\t")
        if r not in rels:
            continue
        target = (rels[r]["scale"] * ents[h]["position"] + rels[r]["shift"]) % 1.0

        def gap(p: float, target: float = target) -> float:
            return min(abs(p - target), 1 - abs(p - target))

        nearest = sorted(gap(p) for p in per_type[ents[t]["type"]])
        total += 1
        held += gap(ents[t]["position"]) <= nearest[cfg.ring_spread - 1] + 1e-9
    assert total and held / total > 0.9, held / total  # 5% of tails: noise within the type
