"""Text features with the builtin all-MiniLM-L6-v2 (offline wheel)."""

from __future__ import annotations

import os

import pytest
import torch

from dhns.config import TextFeatureConfig
from dhns.data.kg import KnowledgeGraph
from dhns.features.text import (
    TextEncoder,
    entity_texts,
    extract_text_features,
    resolve_text_model,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here may download
CPU = torch.device("cpu")


def _kg(names: list[str], descriptions: list[str | None] | None = None) -> KnowledgeGraph:
    n = len(names)
    triples = torch.tensor([[0, 0, min(1, n - 1)]])
    return KnowledgeGraph(
        name="tiny", entity_keys=[f"e{i}" for i in range(n)], entity_names=names,
        relation_keys=["r"], relation_names=["r"], train=triples, valid=triples, test=triples,
        descriptions=descriptions or [],
    )


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.set_num_threads(2)
    return TextEncoder("builtin:all-MiniLM-L6-v2", CPU, max_length=64)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_semantics(encoder):
    kitten, cat, tractor = encoder.encode(["kitten", "cat", "tractor"])
    assert _cos(kitten, cat) > _cos(cat, tractor) + 0.2
    assert encoder.dim == 384 and encoder.normalize  # modules.json lists Normalize
    assert torch.allclose(kitten.norm(), torch.tensor(1.0), atol=1e-5)


def test_rows_follow_entity_ids(encoder):
    names = ["Paris", "a much longer entity name about tractors", "cat", "Berlin Wall", "x"]
    descs = [None, "farm machine", None, "a former wall in Berlin", None]
    cfg = TextFeatureConfig(batch_size=2)
    base = extract_text_features(_kg(names, descs), cfg, CPU, progress=False, encoder=encoder)
    perm = [3, 0, 4, 1, 2]
    permuted = extract_text_features(
        _kg([names[i] for i in perm], [descs[i] for i in perm]), cfg, CPU, progress=False,
        encoder=encoder,
    )
    assert torch.allclose(permuted.features, base.features[perm], atol=1e-5)
    # each row is the embedding of that entity alone (sorting/batching changes nothing)
    alone = encoder.encode(["Berlin Wall. a former wall in Berlin"])[0]
    assert torch.allclose(base.features[3], alone, atol=1e-5)


def test_mask_and_meta(encoder):
    kg = _kg(["cat", "", "dog", "  "], [None, None, "a pet", None])
    table = extract_text_features(kg, TextFeatureConfig(), CPU, progress=False, encoder=encoder)
    assert table.features.shape == (4, 384) and table.features.dtype == torch.float32
    assert table.mask.tolist() == [True, False, True, False]
    assert not table.features[~table.mask].any()
    assert table.meta["with_description"] == 1 and table.meta["with_modality"] == 2
    assert table.meta["dim"] == 384 and table.meta["entities_per_s"] > 0


def test_description_is_used(encoder):
    kg = _kg(["Mercury", "Mercury"], [None, "the planet closest to the Sun"])
    cfg = TextFeatureConfig(template="{name}. {description}")
    table = extract_text_features(kg, cfg, CPU, progress=False, encoder=encoder)
    name_only, with_desc = table.features
    assert _cos(name_only, with_desc) < 0.99
    expected = encoder.encode(["Mercury. the planet closest to the Sun"])[0]
    assert torch.allclose(with_desc, expected, atol=1e-5)


def test_builtin_resolution():
    path, local = resolve_text_model("builtin:all-MiniLM-L6-v2")
    assert local and os.path.isfile(os.path.join(path, "config.json"))
    with pytest.raises(ValueError, match="unknown builtin text model"):
        resolve_text_model("builtin:nope")
    assert resolve_text_model("org/some-hub-model") == ("org/some-hub-model", False)


def _context_kg() -> KnowledgeGraph:
    names = ["Paris", "France", "Lyon", "Berlin", "Germany"]
    train = torch.tensor([[0, 0, 1], [2, 0, 1], [3, 0, 4], [0, 1, 3]])  # capital_of, twin
    held = torch.tensor([[2, 1, 4]])  # valid/test only: must not leak into the context
    return KnowledgeGraph(name="ctx", entity_keys=[f"e{i}" for i in range(5)],
                          entity_names=names, relation_keys=["r0", "r1"],
                          relation_names=["located in", "twinned with"], train=train,
                          valid=held, test=held)


def test_graph_context_templates_use_training_triples_only():
    kg = _context_kg()
    texts = entity_texts(kg, "{name}; relations: {relations}; near: {neighbours}")
    assert texts[1] == "France; relations: located in^-1; near: Paris, Lyon"
    assert texts[0] == "Paris; relations: located in, twinned with; near: France, Berlin"
    assert texts[2] == "Lyon; relations: located in; near: France"  # not Germany (valid only)
    assert entity_texts(kg, "{name}. {description}") == kg.entity_names  # no descriptions
    assert entity_texts(kg, "{neighbours}", context_items=1)[0] == "France"


def test_unknown_template_field_is_refused():
    with pytest.raises(ValueError, match=r"features.text.template: unknown field \{neighbors\}"):
        entity_texts(_context_kg(), "{name} {neighbors}")
