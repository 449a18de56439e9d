"""Contract tests over every registered negative sampler, then each sampler's own mechanism."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from conftest import synthetic_kg

from dhns.config import ConfigError, SyntheticConfig, params_from_dict
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
from dhns.samplers import (
    SamplerContext,
    build_sampler,
    known_samplers,
    sampler_class,
    sampler_options,
)
from dhns.samplers.base import own_entities
from dhns.samplers.sans import random_walk_table
from dhns.training.checkpoint import restore_negative_sampler, save_kge
from dhns.training.kgc import kgc_loss, negative_sampler
from dhns.training.trainer import Trainer

README = Path(__file__).resolve().parents[1] / "README.md"
USAGE = README.parent / "docs" / "usage.md"  # holds the sampler example
K = 12


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def kg(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeGraph:
    config = SyntheticConfig(num_entities=60, num_types=3, num_relations=4,
                             triples_per_relation=50, image_size=8)
    return synthetic_kg(tmp_path_factory, config, "samplers")


def text_model(kg: KnowledgeGraph, seed: int = 0) -> MultimodalKGE:
    """RotatE d=8 with a text table: two clusters of entities (ids below / above N / 2)."""
    n = kg.num_entities
    g = gen(100)
    centre = torch.where(torch.arange(n)[:, None] < n // 2, 1.0, -1.0) * torch.ones(n, 6)
    table = centre + 0.1 * torch.randn(n, 6, generator=g)
    mask = torch.ones(n, dtype=torch.bool)
    mask[-3:] = False  # a few entities without text
    cfg = KGEModelConfig("rotate", 8, 6.0, n, kg.num_relations, [STRUCTURE, "text"],
                         {"text": 6})
    return MultimodalKGE(cfg, {"text": (table, mask)}, generator=gen(seed)).eval()


def context(kg: KnowledgeGraph) -> SamplerContext:
    return SamplerContext(kg.num_entities, kg.num_relations, kg.train)


def batch_of(kg: KnowledgeGraph, size: int = 20, seed: int = 1) -> torch.Tensor:
    return kg.train[torch.randperm(len(kg.train), generator=gen(seed))[:size]]


ALL = known_samplers()


def test_the_papers_samplers_are_registered() -> None:
    assert {"uniform", "bernoulli", "nscaching", "sans", "kbgan", "mans", "mmrns"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_shapes_range_and_device(kg: KnowledgeGraph, name: str) -> None:
    sampler = build_sampler(name, context(kg), K, chunk_size=8)
    batch = batch_of(kg, 21)
    out = sampler.sample(batch, gen(2), text_model(kg))
    rows = len(batch) if sampler.per_positive else -(-len(batch) // 8)
    assert out.candidates.shape == (rows, K) and out.candidates.dtype == torch.long
    assert out.corrupt_tail.shape == (len(batch),) and out.corrupt_tail.dtype == torch.bool
    assert int(out.candidates.min()) >= 0 and int(out.candidates.max()) < kg.num_entities
    assert out.candidates.device == batch.device


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_a_seeded_generator(kg: KnowledgeGraph, name: str) -> None:
    runs = []
    for _ in range(2):
        sampler, model, g = build_sampler(name, context(kg), K), text_model(kg), gen(3)
        runs.append([sampler.sample(batch_of(kg, 16, seed), g, model) for seed in (1, 2, 3)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a.candidates, b.candidates)
        assert torch.equal(a.corrupt_tail, b.corrupt_tail)


@pytest.mark.parametrize("name", [n for n in ALL if sampler_class(n).per_positive])
def test_no_positive_is_its_own_negative(kg: KnowledgeGraph, name: str) -> None:
    sampler, model, g = build_sampler(name, context(kg), 40), text_model(kg), gen(4)
    for seed in range(5):
        batch = batch_of(kg, 30, seed)
        out = sampler.sample(batch, g, model)
        own = own_entities(batch, out.corrupt_tail)
        assert not bool((out.candidates == own[:, None]).any())


@pytest.mark.parametrize("name", ALL)
def test_the_model_is_left_untouched(kg: KnowledgeGraph, name: str) -> None:
    model = text_model(kg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = build_sampler(name, context(kg), K)
    for seed in range(3):
        sampler.sample(batch_of(kg, 16, seed), gen(seed), model)
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", ALL)
def test_state_round_trips(kg: KnowledgeGraph, name: str) -> None:
    model = text_model(kg)
    original = build_sampler(name, context(kg), K)
    for seed in range(3):  # let it build and update whatever state it keeps
        original.sample(batch_of(kg, 16, seed), gen(10 + seed), model)
    state = original.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    restored = build_sampler(name, context(kg), K)
    restored.load_state_dict({k: v.clone() for k, v in state.items()})
    a = original.sample(batch_of(kg, 16, 7), gen(20), model)
    b = restored.sample(batch_of(kg, 16, 7), gen(20), model)
    assert torch.equal(a.candidates, b.candidates)
    assert torch.equal(a.corrupt_tail, b.corrupt_tail)


@pytest.mark.parametrize("name", ALL)
def test_trains_from_params(kg: KnowledgeGraph, name: str) -> None:
    """Each sampler is reachable by one param and trains the KGE (loss goes down)."""
    params = params_from_dict({"kge": {"negative_sampler": name, "num_negatives": 8}})
    model = text_model(kg)
    model.train()
    g = gen(5)
    trainer = Trainer(model, kg.train, kgc_loss(params.kge, kg, g), epochs=6, batch_size=50,
                      lr=0.02, generator=g, log=lambda _m: None, progress=False)
    history = trainer.fit().history
    assert history[-1]["loss"] < history[0]["loss"]


# -- config and checkpoint ------------------------------------------------------------------


def options_of(kge: dict, name: str | None = None):
    return sampler_options(params_from_dict({"kge": kge}).kge, name)


def test_unknown_sampler_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"kge.negative_sampler: unknown negative sampler "
                                          r"'nscache' \(known: uniform, bernoulli"):
        options_of({"negative_sampler": "nscache"})
    with pytest.raises(ConfigError, match="kge.sampler_options.sanss: unknown"):
        options_of({"sampler_options": {"sanss": {}}})


def test_sampler_options_are_strict() -> None:
    with pytest.raises(ConfigError, match=r"unknown key kge.sampler_options.nscaching.size "
                                          r"\(known under kge.sampler_options.nscaching: "
                                          r"cache_size"):
        options_of({"sampler_options": {"nscaching": {"size": 3}}})
    with pytest.raises(ConfigError, match="kge.sampler_options.sans.hops: must be >= 1"):
        options_of({"sampler_options": {"sans": {"hops": 0}}})
    kge = {"negative_sampler": "sans", "sampler_options": {"sans": {"hops": 3}}}
    assert options_of(kge).hops == 3
    assert options_of(kge, "nscaching").cache_size == 50  # the default


def test_the_shipped_params_hold_every_samplers_options() -> None:
    from dhns.config import load_params

    params = load_params(README.parent / "params.yaml")
    assert set(params.kge.sampler_options) == set(ALL) - {"uniform", "bernoulli"}
    for name in params.kge.sampler_options:  # and their values are the defaults
        assert sampler_options(params.kge, name) == sampler_class(name).Options()


def test_a_sampler_needs_the_ns_regime() -> None:
    with pytest.raises(ConfigError, match="kge.negative_sampler: sans draws the negatives of "
                                          "kge.loss ns"):
        params_from_dict({"kge": {"negative_sampler": "sans", "loss": "1vsall"}})


def test_checkpoint_keeps_the_sampler_state(kg: KnowledgeGraph, tmp_path: Path) -> None:
    params = params_from_dict({"kge": {"negative_sampler": "nscaching", "num_negatives": 8}})
    model = text_model(kg)
    sampler = negative_sampler(params.kge, kg)
    sampler.sample(batch_of(kg), gen(1), model)
    path = tmp_path / "kge.pt"
    save_kge(path, model, vocabulary=kg.vocabulary(), negative_sampler=sampler)
    again = negative_sampler(params.kge, kg)
    assert restore_negative_sampler(path, again)
    assert torch.equal(again.state_dict()["tail_cache"], sampler.state_dict()["tail_cache"])
    other = params_from_dict({"kge": {"negative_sampler": "nscaching",
                                      "sampler_options": {"nscaching": {"cache_size": 9}}}})
    assert not restore_negative_sampler(path, negative_sampler(other.kge, kg))  # other shape


# -- each sampler's mechanism ----------------------------------------------------------------


def test_nscaching_caches_become_harder_and_hold_no_known_answer(kg: KnowledgeGraph) -> None:
    model = text_model(kg)
    sampler = build_sampler("nscaching", context(kg), K)
    triples = kg.train[:40]
    predictor = model.link_predictor()
    known = FilterIndex(kg.train, kg.num_relations)

    def mean_cached_score() -> float:
        rows = sampler._rows(0, triples[:, 0], triples[:, 1])
        scores = predictor.score_tails(triples[:, 0], triples[:, 1])
        return float(scores.gather(1, sampler.caches[0][rows]).mean())

    g = gen(6)
    sampler.sample(triples, g, model)
    first = mean_cached_score()
    for _ in range(15):
        sampler.sample(triples, g, model)
    assert mean_cached_score() > first + 0.3
    rows = sampler._rows(0, triples[:, 0], triples[:, 1])
    qrows, cols = known.answers(triples[:, 0], triples[:, 1], "tail")
    cached = sampler.caches[0][rows]
    assert not bool((cached[qrows] == cols[:, None]).any())


def test_sans_walks_stay_within_k_hops() -> None:
    # A path 0 - 1 - 2 - ... - 9: two steps from entity 5 reach 3..7 only.
    path = torch.tensor([[i, 0, i + 1] for i in range(9)])
    table = random_walk_table(path, 10, walks=20, hops=2, generator=gen(7))
    assert table.shape == (10, 40)
    assert set(table[5].tolist()) <= {3, 4, 5, 6, 7} and {4, 6} <= set(table[5].tolist())
    assert set(table[0].tolist()) <= {0, 1, 2}
    isolated = random_walk_table(path, 12, walks=3, hops=2, generator=gen(7))
    assert set(isolated[11].tolist()) == {11}


def test_sans_negatives_come_from_the_anchors_neighbourhood() -> None:
    path = torch.tensor([[i, 0, i + 1] for i in range(9)])
    sampler = build_sampler("sans", SamplerContext(10, 1, path), 400,
                            sampler_class("sans").Options(hops=1, uniform_share=0.0))
    batch = torch.tensor([[4, 0, 5]] * 50)
    out = sampler.sample(batch, gen(8))
    tails = out.candidates[out.corrupt_tail]  # anchor 4: neighbours 3 and 5 (its own tail)
    assert not bool((tails == 5).any())
    # The 1-hop walks from 4 go to 3 or to 5; those to 5 became uniform draws of the others.
    assert float((tails == 3).float().mean()) > 0.4
    assert len(set(tails.flatten().tolist())) > 5


def test_mans_draws_feature_neighbours(kg: KnowledgeGraph) -> None:
    params = params_from_dict({"kge": {"negative_sampler": "mans", "sampler_options": {
        "mans": {"uniform_share": 0.0, "neighbours": 10}}}})
    sampler = negative_sampler(params.kge, kg)
    n = kg.num_entities
    batch = batch_of(kg, 30)
    out = sampler.sample(batch, gen(9), text_model(kg))
    own = own_entities(batch, out.corrupt_tail)
    with_text = own < n - 3
    same = (out.candidates < n // 2) == (own < n // 2)[:, None]
    assert bool(same[with_text].all())  # always its own text cluster


# -- a user's own sampler, as docs/usage.md shows it -------------------------------------------


def test_the_documented_example_sampler_registers_and_trains(kg: KnowledgeGraph) -> None:
    text = USAGE.read_text()
    match = re.search(r"<!-- sampler-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/usage.md lost its sampler example"
    code = match.group(1)
    body = [line for line in code.splitlines()
            if line.strip() and not line.startswith(("import", "from"))]
    assert len(body) <= 14  # "a ten-line example": the class itself
    namespace: dict = {}
    exec(compile(code, "docs/usage.md", "exec"), namespace)
    name = namespace["SameTypeSampler"].name
    try:
        params = params_from_dict({"kge": {"negative_sampler": name, "num_negatives": 8}})
        model = text_model(kg)
        model.train()
        g = gen(11)
        fit = Trainer(model, kg.train, kgc_loss(params.kge, kg, g), epochs=2, batch_size=50,
                      lr=0.02, generator=g, log=lambda _m: None, progress=False).fit()
        assert len(fit.history) == 2
        assert dataclasses.is_dataclass(sampler_class(name).Options)
        for contract in (test_shapes_range_and_device, test_deterministic_under_a_seeded_generator,
                         test_no_positive_is_its_own_negative, test_the_model_is_left_untouched,
                         test_state_round_trips):
            contract(kg, name)
    finally:
        from dhns.samplers import registry
        registry._SAMPLERS.pop(name, None)
