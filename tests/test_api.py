"""The Python API: ``dhns.load`` and predictions by names, against the model's own scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dhns
from dhns.config import KGEConfig, SyntheticConfig
from dhns.data import generate_synthetic, load_dataset
from dhns.data.vocabulary import VocabularyError
from dhns.kge.build import build_kge
from dhns.samplers.corruption import uniform_sampler
from dhns.training.checkpoint import save_kge
from dhns.training.kgc import sampled_loss
from dhns.training.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic dataset and a structure-only RotatE trained on it for 40 epochs."""
    root = tmp_path_factory.mktemp("api")
    dataset = root / "toy"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=3, num_relations=3,
                                       triples_per_relation=60, image_size=8), dataset)
    kg, _ = load_dataset(dataset)
    g = torch.Generator().manual_seed(0)
    model, _ = build_kge(KGEConfig(dim=16, modalities=["structure"]), kg, {}, g)
    Trainer(model, kg.train, sampled_loss(uniform_sampler(kg.num_entities, 16), 1.0, g),
            epochs=40, batch_size=64, lr=0.02, generator=g, log=lambda _m: None,
            progress=False).fit()
    checkpoint = root / "model.pt"
    save_kge(checkpoint, model, meta={"dataset": kg.name}, vocabulary=kg.vocabulary())
    return dataset, checkpoint


def test_predict_tails_and_heads_by_name(trained: tuple[Path, Path]) -> None:
    dataset, checkpoint = trained
    model = dhns.load(checkpoint, dataset)
    kg = model.graph
    h, r, t = kg.train[0].tolist()
    head, relation, tail = kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]
    tails = model.predict_tails(head, relation, k=5)
    assert [p.rank for p in tails] == [1, 2, 3, 4, 5]
    scores = model.kge.link_predictor().score_tails(torch.tensor([h]), torch.tensor([r]))[0]
    best = scores.topk(5)
    assert [p.entity for p in tails] == [kg.entity_names[int(i)] for i in best.indices]
    assert [p.score for p in tails] == pytest.approx(best.values.tolist())
    assert all(p.known == (kg.entity_names.index(p.entity) in
                           model.known_answers(h, r, "tail")) for p in tails)
    # A trained model ranks a training answer near the top.
    every = model.predict_tails(head, relation, k=kg.num_entities)
    assert next(p.rank for p in every if p.entity == tail) <= 10
    heads = model.predict_heads(relation.upper(), tail, k=3)  # case-insensitive names
    assert len(heads) == 3 and heads[0].score >= heads[-1].score
    batch = model.score_tails([head, tail], [relation, relation])
    assert batch.shape == (2, kg.num_entities)


def test_prepared_folder_and_errors(trained: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, checkpoint = trained
    kg, _ = load_dataset(dataset)
    kg.save(tmp_path / "prepared")
    model = dhns.load(checkpoint, tmp_path / "prepared")
    assert model.graph.num_entities == kg.num_entities
    with pytest.raises(ValueError, match="unknown entity 'no such thing'"):
        model.predict_tails("no such thing", kg.relation_names[0])
    with pytest.raises(ValueError, match="k must be >= 1"):
        model.predict_tails(kg.entity_names[0], kg.relation_names[0], k=0)
    with pytest.raises(TypeError, match="sequence of names"):
        model.score_tails(kg.entity_names[0], kg.relation_names[0])
    other = tmp_path / "other"
    generate_synthetic(SyntheticConfig(num_entities=50, num_types=3, num_relations=3,
                                       triples_per_relation=30, image_size=8), other)
    with pytest.raises(VocabularyError):
        dhns.load(checkpoint, other)


def test_the_module_example_runs(trained: tuple[Path, Path]) -> None:
    """The calls of dhns.api's docstring example, on the trained toy model."""
    dataset, checkpoint = trained
    model = dhns.load(str(checkpoint), str(dataset))
    kg = model.graph
    out = model.predict_tails(kg.entity_names[0], kg.relation_names[0], k=3)
    assert len(out) == 3 and isinstance(out[0], dhns.Prediction)
