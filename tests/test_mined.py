"""Mined real negatives: the cache, both miners against brute force, the loss and its schedule."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import synthetic_kg

from dhns.config import SyntheticConfig
from dhns.data.kg import KnowledgeGraph
from dhns.diffusion.model import DiffusionModel
from dhns.evaluation.filter import FilterIndex
from dhns.kge.loss import kge_loss
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
from dhns.negatives import HierarchicalLevels, diffusion_pairs, diffusion_streams
from dhns.negatives.generated_softmax import (
    GeneratedCandidates,
    generate_for_triples,
    generated_loss,
)
from dhns.negatives.mined import (
    MinedCandidates,
    MinedNegativeLoss,
    mine_by_diffusion,
    mine_by_score,
    mined_loss,
)
from dhns.negatives.ntat import embed_with_generated
from dhns.samplers.corruption import uniform_sampler

K = 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def kg(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeGraph:
    config = SyntheticConfig(num_entities=80, num_types=4, num_relations=4,
                             triples_per_relation=60, image_size=8)
    return synthetic_kg(tmp_path_factory, config, "mined")


@pytest.fixture(scope="module")
def model(kg: KnowledgeGraph) -> MultimodalKGE:
    cfg = KGEModelConfig("rotate", 8, 6.0, kg.num_entities, kg.num_relations, [STRUCTURE])
    return MultimodalKGE(cfg, generator=gen(0)).eval()


@pytest.fixture(scope="module")
def known(kg: KnowledgeGraph) -> FilterIndex:
    return FilterIndex(kg.train, kg.num_relations)


def _answers(known: FilterIndex, anchor: int, relation: int, side: str) -> set[int]:
    _, cols = known.answers(torch.tensor([anchor]), torch.tensor([relation]), side)
    return set(cols.tolist())


def test_cache_finds_rows_in_any_order(kg: KnowledgeGraph) -> None:
    cache = MinedCandidates(kg.train, kg.num_entities, kg.num_relations, K)
    pick = torch.randperm(len(kg.train), generator=gen(1))[:20]
    assert torch.equal(cache.rows(kg.train[pick]), pick)
    cache.ids[pick[0], 1] = torch.arange(K)
    side = torch.tensor([False] + [True] * 19)  # the first positive corrupts its head
    assert cache.lookup(kg.train[pick], side)[0].tolist() == list(range(K))
    stranger = torch.tensor([[0, 0, 0]])
    while bool((kg.train == stranger).all(1).any()):
        stranger[0, 2] += 1
    with pytest.raises(ValueError, match="not in training"):
        cache.rows(stranger)


def test_mine_by_score_is_the_filtered_top_k(kg, model, known) -> None:
    triples = kg.train[:30]
    mined = mine_by_score(model, triples, known, K, batch_size=7)
    assert mined.shape == (30, 2, K)
    predictor = model.link_predictor()
    for i, (h, r, t) in enumerate(triples.tolist()):
        for side, (scores, anchor, own) in enumerate((
                (predictor.score_tails(torch.tensor([h]), torch.tensor([r]))[0], h, t),
                (predictor.score_heads(torch.tensor([r]), torch.tensor([t]))[0], t, h))):
            banned = _answers(known, anchor, r, ("tail", "head")[side]) | {own}
            ranked = [e for e in scores.argsort(descending=True).tolist() if e not in banned]
            assert mined[i, side].tolist() == ranked[:K]


@pytest.fixture(scope="module")
def hier(kg: KnowledgeGraph, model: MultimodalKGE) -> HierarchicalLevels:
    streams = diffusion_streams(model, ["structure"])
    x0, c, stream = diffusion_pairs(model, kg.train, streams)
    sampler = DiffusionModel(model.scorer.entity_width, streams, steps=20, generator=gen(2))
    sampler.fit_standardisation(x0, c, stream)
    sampler.fit(x0, c, stream, 2, 128, 1e-3, gen(3))
    return HierarchicalLevels(sampler.eval(), [0.1, 0.5], 4)


def test_mine_by_diffusion_takes_the_nearest_real_entities(kg, model, known, hier) -> None:
    triples = kg.train[:12]
    mined = mine_by_diffusion(model, hier, triples, known, 4, gen(5), batch_size=5)
    again = mine_by_diffusion(model, hier, triples, known, 4, gen(5), batch_size=5)
    assert torch.equal(mined, again)  # seeded generator: the same generated negatives
    # Brute force for the first batch of 5: regenerate with the same stream of draws.
    part = triples[:5]
    negatives = hier.generate(model, part, gen(5))
    _, _, _, h_hat, t_hat = embed_with_generated(model, negatives)
    entities = model.all_entity_embeddings()
    for i, (h, r, t) in enumerate(part.tolist()):
        for side, (generated, anchor, own) in enumerate(((t_hat, h, t), (h_hat, t, h))):
            banned = _answers(known, anchor, r, ("tail", "head")[side]) | {own}
            expected: list[int] = []
            for level in generated:  # 2 levels, ceil(4 / 2) = 2 nearest each
                order = (entities - level[i]).norm(dim=1).argsort().tolist()
                expected += [e for e in order if e not in banned][:2]
            expected = list(dict.fromkeys(expected))
            row = mined[i, side].tolist()
            assert row[:len(expected)] == expected and all(v == -1 for v in row[len(expected):])


def test_no_candidates_is_the_ordinary_loss(kg, model) -> None:
    batch = kg.train[:16]
    negatives = uniform_sampler(kg.num_entities, 6, chunk_size=4).sample(batch, gen(6))
    none = torch.full((16, K), -1)
    assert torch.allclose(mined_loss(model, batch, negatives, none, 1.0),
                          kge_loss(model, batch, negatives, 1.0), atol=1e-6)


def test_mined_candidates_get_the_gradient(kg, model) -> None:
    """A mined entity that no uniform negative drew is pushed by the loss (generated
    negatives never give a real entity a gradient; mined ones do)."""
    batch = kg.train[:4]
    negatives = uniform_sampler(kg.num_entities, 3, chunk_size=4).sample(batch, gen(7))
    used = set(batch[:, [0, 2]].flatten().tolist()) | set(negatives.candidates.flatten().tolist())
    outsider = next(e for e in range(kg.num_entities) if e not in used)
    mined = torch.full((4, K), -1)
    mined[0, 0] = outsider
    model.zero_grad()
    mined_loss(model, batch, negatives, mined, 1.0).backward()
    grad = model.entity.grad
    assert grad[outsider].abs().sum() > 0
    padding_only = [e for e in range(kg.num_entities) if e not in used and e != outsider]
    assert grad[padding_only].abs().sum() == 0
    model.zero_grad()


def test_loss_mines_on_schedule(kg, model) -> None:
    calls: list[int] = []
    cache = MinedCandidates(kg.train, kg.num_entities, kg.num_relations, K)

    def mine(_model: MultimodalKGE) -> torch.Tensor:
        calls.append(len(calls))
        return torch.full((len(kg.train), 2, K), -1)

    sampler, draws = uniform_sampler(kg.num_entities, 4), gen(8)

    def with_candidates(model, batch, step):
        return cache.loss(model, batch, sampler.sample(batch, draws), 1.0), {}

    loss_fn = MinedNegativeLoss(with_candidates, cache, mine, steps_per_epoch=3, mine_every=2)
    for step in range(13):  # epochs of 3 steps; mining at the start of epochs 1, 3, 5
        loss, _ = loss_fn(model, kg.train[:8], step)
        assert math.isfinite(loss.item())
    assert len(calls) == 3 and loss_fn.minings == 3


def test_pool_mining_ranks_within_the_pool(kg, model, known) -> None:
    """With a pool, the candidates are the pool's filtered top-k, and all come from it."""
    triples = kg.train[:9]
    pool = 20
    mined = mine_by_score(model, triples, known, K, batch_size=9, pool=pool, generator=gen(4))
    ids = set(torch.randperm(kg.num_entities, generator=gen(4))[:pool].tolist())
    predictor = model.link_predictor()
    for i, (h, r, t) in enumerate(triples.tolist()):
        scores = predictor.score_tails(torch.tensor([h]), torch.tensor([r]))[0]
        banned = _answers(known, h, r, "tail") | {t}
        ranked = [e for e in scores.argsort(descending=True).tolist()
                  if e in ids and e not in banned]
        row = [e for e in mined[i, 0].tolist() if e >= 0]
        assert row == ranked[:K] and set(row) <= ids


# Generated negatives in the softmax (retrain.mined: generated).


def test_generated_store_holds_each_triples_generated_embeddings(kg, model, hier) -> None:
    triples = kg.train[:12]
    store = generate_for_triples(model, hier, triples, gen(8), batch_size=5)
    assert store.shape == (12, 2, hier.num_levels, model.scorer.entity_width)
    assert torch.equal(store, generate_for_triples(model, hier, triples, gen(8), batch_size=5))
    _, _, _, h_hat, t_hat = embed_with_generated(model, hier.generate(model, triples[:5], gen(8)))
    assert torch.allclose(store[:5, 0], t_hat.transpose(0, 1))  # side 0: generated tails
    assert torch.allclose(store[:5, 1], h_hat.transpose(0, 1))
    cache = GeneratedCandidates(triples, kg.num_entities, kg.num_relations, [1.0, 1.0])
    with pytest.raises(ValueError, match="3 levels|2 levels"):
        cache.store(store[:, :, :1])


def test_generated_negatives_enter_the_softmax_by_prior_and_score(kg, model) -> None:
    batch = kg.train[:16]
    negatives = uniform_sampler(kg.num_entities, 6, chunk_size=4).sample(batch, gen(9))
    tails = model.all_entity_embeddings()[batch[:, 2]].detach()
    # A zero prior weight removes a level: with every level off this is the ordinary loss.
    off = torch.full((2,), -math.inf)
    generated = tails[:, None].expand(-1, 2, -1)
    assert torch.allclose(generated_loss(model, batch, negatives, generated, off, 1.0),
                          kge_loss(model, batch, negatives, 1.0), atol=1e-6)
    # A generated copy of the true answer scores as high as the positive: the more prior
    # weight its level gets, the larger the loss; its gradient reaches the query entities.
    low = generated_loss(model, batch, negatives, generated, torch.tensor([0.1, 0.1]).log(), 1.0)
    model.zero_grad()
    high = generated_loss(model, batch, negatives, generated, torch.tensor([1.0, 1.0]).log(), 1.0)
    high.backward()
    assert high > low
    assert model.entity.grad.abs().sum() > 0


def test_generated_candidates_follow_the_corrupted_side(kg, model) -> None:
    triples = kg.train[:8]
    cache = GeneratedCandidates(triples, kg.num_entities, kg.num_relations, [1.0, 1.0])
    width = model.scorer.entity_width
    store = torch.zeros(8, 2, 2, width)
    store[:, 1] = 5.0  # head-side candidates differ from tail-side ones
    cache.store(store)
    order = torch.tensor([3, 1, 0, 2, 7, 6, 5, 4])
    corrupt_tail = torch.tensor([True, False] * 4)
    negatives = uniform_sampler(kg.num_entities, 3, chunk_size=4).sample(triples[order], gen(10))
    negatives.corrupt_tail = corrupt_tail
    expected = generated_loss(model, triples[order], negatives,
                              store[order, (~corrupt_tail).long()], cache.log_prior, 1.0)
    assert torch.allclose(cache.loss(model, triples[order], negatives, 1.0), expected)
