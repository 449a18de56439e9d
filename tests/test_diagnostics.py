"""Diagnostics of generated negatives against the real entities, and of NTAT's loss parts.

Tiny random triples, untrained KGEs and an untrained sampler: the diagnostics are checked
against brute-force loops and hand-built cases, not against a good model.
"""

from __future__ import annotations

import math

import pytest
import torch

from dhns.diffusion.model import DiffusionModel
from dhns.evaluation.evaluator import rank_targets
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
from dhns.negatives import HierarchicalLevels, NTATLoss, hardness_aware_loss
from dhns.negatives.diagnostics import (
    epoch_coverage,
    generated_ranks,
    gradient_norms,
    gradient_shares,
    loss_gradient_report,
    nearest_real_entity,
    rank_summary,
    real_entity_diagnostics,
)
from dhns.negatives.ntat import hardness_aware_parts
from dhns.negatives.pairs import diffusion_streams
from dhns.samplers.corruption import uniform_sampler
from dhns.training.kgc import sampled_loss, with_extra_loss
from dhns.training.trainer import Trainer

N, R, TRAIN = 30, 3, 150
FRACTIONS = [0.1, 0.3, 0.6]
WEIGHTS = [0.5, 1.0, 0.5]
MARGINS = [0.3, 0.6, 0.9]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def triples() -> torch.Tensor:
    """``(TRAIN, 3)`` distinct random triples: about 1.7 known tails per (h, r)."""
    g = gen(0)
    rows = torch.stack([torch.randint(N, (400,), generator=g),
                        torch.randint(R, (400,), generator=g),
                        torch.randint(N, (400,), generator=g)], 1)
    distinct = torch.unique(rows, dim=0)
    return distinct[torch.randperm(len(distinct), generator=g)[:TRAIN]]


def tiny_model(name: str, seed: int = 1, text: bool = True) -> MultimodalKGE:
    g = gen(seed)
    if not text:
        return MultimodalKGE(KGEModelConfig(name, 4, 6.0, N, R), generator=g)
    mask = torch.rand(N, generator=g) > 0.3
    table = torch.randn(N, 5, generator=g) * mask[:, None]
    cfg = KGEModelConfig(name, 4, 6.0, N, R, [STRUCTURE, "text"], {"text": 5})
    model = MultimodalKGE(cfg, {"text": (table, mask)}, g)
    with torch.no_grad():
        model.fusion.query.normal_(generator=g)  # non-uniform attention
    return model.eval()


@pytest.fixture(scope="module")
def model() -> MultimodalKGE:
    return tiny_model("rotate")


@pytest.fixture(scope="module")
def hier(model: MultimodalKGE) -> HierarchicalLevels:
    streams = diffusion_streams(model, ["structure", "text"])
    sampler = DiffusionModel(model.scorer.entity_width, streams, steps=20, generator=gen(2))
    return HierarchicalLevels(sampler, FRACTIONS, sampling_steps=5)


# -- rank among the real wrong answers --------------------------------------------------------


def brute_force_ranks(model: MultimodalKGE, anchors, relations, generated, direction,
                      known: set[tuple[int, int, int]]) -> torch.Tensor:
    """One entity at a time, by the plain score function."""
    with torch.no_grad():
        entities = model.all_entity_embeddings()
        rel = model.relation
        score = model.scorer.score
        out = torch.zeros(generated.shape[:2], dtype=torch.int64)
        for b, (a, r) in enumerate(zip(anchors.tolist(), relations.tolist(), strict=True)):
            for level in range(generated.shape[0]):
                g = generated[level, b]
                if direction == "tail":
                    s_gen = score(entities[a], rel[r], g)
                else:
                    s_gen = score(g, rel[r], entities[a])
                rank = 1
                for e in range(N):
                    triple = (a, r, e) if direction == "tail" else (e, r, a)
                    if triple in known:
                        continue
                    s_e = (score(entities[a], rel[r], entities[e]) if direction == "tail"
                           else score(entities[e], rel[r], entities[a]))
                    rank += int(s_e > s_gen)
                out[level, b] = rank
    return out


@pytest.mark.parametrize("name", ["rotate", "transe", "distmult", "complex"])
def test_generated_ranks_match_brute_force(name: str, triples: torch.Tensor) -> None:
    model = tiny_model(name)
    index = FilterIndex(triples, R)
    known = {tuple(t) for t in triples.tolist()}
    batch = triples[:20]
    g = gen(3)
    with torch.no_grad():
        entities = model.all_entity_embeddings()
        # generated entities near real ones, at three noise scales: ranks spread from 1 up
        near = entities[torch.randint(N, (3, len(batch)), generator=g)]
        noise = torch.randn(near.shape, generator=g) * torch.tensor([0.01, 0.1, 1.0])[:, None,
                                                                                     None]
        generated = near + noise * entities.std()
    for direction, anchors in (("tail", batch[:, 0]), ("head", batch[:, 2])):
        ranks, wrong = generated_ranks(model, anchors, batch[:, 1], generated, direction, index,
                                       batch_size=7)  # several batches
        expected = brute_force_ranks(model, anchors, batch[:, 1], generated, direction, known)
        assert torch.equal(ranks, expected), (direction, ranks, expected)
        rows, _ = index.answers(anchors, batch[:, 1], direction)
        assert torch.equal(wrong, N - torch.bincount(rows, minlength=len(batch)))
        assert 1 <= int(ranks.min()) and bool((ranks <= wrong + 1).all())
    assert len(set(ranks.flatten().tolist())) > 3  # the case is not degenerate


def test_generated_ranks_extremes_and_nan(model: MultimodalKGE, triples: torch.Tensor) -> None:
    index = FilterIndex(triples, R)
    h, r, t = triples[:12].unbind(1)
    with torch.no_grad():
        entities = model.all_entity_embeddings()
        query = model.scorer.query(entities[h], model.relation[r], "tail")
        generated = torch.stack([query, entities[t], torch.full_like(query, math.nan)])
        predictor = model.link_predictor()
        rows, cols = index.answers(h, r, "tail")
        optimistic, _ = rank_targets(predictor.score_tails(h, r), t, rows, cols)
    ranks, wrong = generated_ranks(model, h, r, generated, "tail", index)
    assert bool((ranks[0] == 1).all())  # RotatE: the query itself has distance 0, the best
    # a copy of the true tail ranks where the filtered evaluator ranks the tail (optimistic)
    assert torch.equal(ranks[1], optimistic)
    assert bool((ranks[2] == wrong + 1).all())  # NaN ranks last


def test_rank_summary() -> None:
    ranks = torch.tensor([[1, 1, 3, 7], [2, 4, 6, 100]])
    out = rank_summary(ranks, [2, 5])
    assert out == {"t=2": {"mean_rank": 3.0, "median_rank": 2.0, "rank1_fraction": 0.5},
                   "t=5": {"mean_rank": 28.0, "median_rank": 5.0, "rank1_fraction": 0.0}}


# -- nearest real entity: a known answer? ------------------------------------------------------


def test_nearest_real_entity_is_euclidean_and_checks_known_answers() -> None:
    model = MultimodalKGE(KGEModelConfig("transe", 2, 6.0, 5, 1), generator=gen(4))
    points = [[3.0, 3.0], [5.0, 0.0], [20.0, 20.0], [-20.0, 20.0], [0.0, -30.0]]
    with torch.no_grad():
        model.entity.copy_(torch.tensor(points))
    # (2, 0, 0) and (3, 0, 1) are known: tail 0 answers (2, 0, ?), head 3 answers (?, 0, 1)
    index = FilterIndex(torch.tensor([[2, 0, 0], [3, 0, 1]]), 1)
    # (0, 0) is nearer entity 0 by Euclidean distance (4.24 < 5) but entity 1 by L1 (6 > 5)
    generated = torch.tensor([[[0.0, 0.0], [0.0, 0.0]],
                              [[5.5, 0.5], [5.5, 0.5]],
                              [[-19.0, 19.0], [0.0, -29.0]]])  # (L=3, B=2, D)
    nearest, known = nearest_real_entity(model, torch.tensor([2, 2]), torch.tensor([0, 0]),
                                         generated, "tail", index)
    assert nearest.tolist() == [[0, 0], [1, 1], [3, 4]]
    assert known.tolist() == [[True, True], [False, False], [False, False]]
    nearest, known = nearest_real_entity(model, torch.tensor([1, 4]), torch.tensor([0, 0]),
                                         generated, "head", index, batch_size=1)
    assert nearest.tolist() == [[0, 0], [1, 1], [3, 4]]
    assert known.tolist() == [[False, False], [False, False], [True, False]]


def test_real_entity_diagnostics_keys(model: MultimodalKGE, hier: HierarchicalLevels,
                                      triples: torch.Tensor) -> None:
    negatives = hier.generate(model, triples[:16], gen(5))
    out = real_entity_diagnostics(model, hier.levels, negatives, FilterIndex(triples, R))
    levels = [f"t={t}" for t in hier.levels]
    assert list(out["generated_rank"]) == levels == list(out["nearest_known_answer"])
    for summary in out["generated_rank"].values():
        assert 1 <= summary["median_rank"] <= N and 0 <= summary["rank1_fraction"] <= 1
    assert all(0 <= v <= 1 for v in out["nearest_known_answer"].values())
    assert 0 < out["wrong_answers"] <= N


# -- L_HA split and gradient shares ------------------------------------------------------------


@pytest.mark.parametrize("margins", [MARGINS, None])
@pytest.mark.parametrize("temperature", [None, 0.0, 1.0, 20.0])
def test_ha_parts_sum_to_the_loss(model: MultimodalKGE, hier: HierarchicalLevels,
                                  triples: torch.Tensor, margins, temperature) -> None:
    negatives = hier.generate(model, triples[:24], gen(6))
    loss, _ = hardness_aware_loss(model, negatives, WEIGHTS, margins, temperature)
    parts = hardness_aware_parts(model, negatives, WEIGHTS, margins, temperature)
    torch.testing.assert_close(parts.positive + parts.negative, loss)
    assert float(parts.positive.detach()) > 0 and float(parts.negative.detach()) > 0
    # the gradients add up too
    params = [model.entity, model.relation]
    total = torch.autograd.grad(loss, params)
    split = torch.autograd.grad(parts.positive + parts.negative, params)
    for a, b in zip(total, split, strict=True):
        torch.testing.assert_close(a, b)


def test_gradient_norms_and_shares(model: MultimodalKGE) -> None:
    x = (model.entity ** 2).sum()
    parts = {"a": 3 * x, "b": x, "zero": 0.0 * x, "constant": torch.tensor(1.0)}
    params = [p for p in model.parameters() if p.requires_grad]
    norms = gradient_norms(parts, params)
    expected = float((2 * model.entity.detach()).norm())
    assert norms["a"] == pytest.approx(3 * expected) and norms["b"] == pytest.approx(expected)
    assert norms["zero"] == 0 and norms["constant"] == 0
    assert all(p.grad is None for p in params)
    shares = gradient_shares(norms)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] == pytest.approx(0.75) and shares["zero"] == 0
    assert all(math.isnan(v) for v in gradient_shares({"a": 0.0, "b": 0.0}).values())


@pytest.mark.parametrize("lambda_ha", [0.01, 0.0])
def test_loss_gradient_report(model: MultimodalKGE, hier: HierarchicalLevels,
                              triples: torch.Tensor, lambda_ha: float) -> None:
    ntat = NTATLoss(hier, lambda_ha, WEIGHTS, MARGINS, gen(7), generate_fraction=0.5)
    kgc = sampled_loss(uniform_sampler(N, 8, chunk_size=16), 1.0, gen(8))
    batches = [triples[:32], triples[32:64]]
    report = loss_gradient_report(model, batches, kgc, ntat, gen(9))
    assert set(report["norm"]) == set(report["share"]) == {"kgc", "ha_positive", "ha_negative"}
    assert report["batches"] == 2
    assert sum(report["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert report["norm"]["kgc"] > 0
    if lambda_ha == 0:
        assert report["share"]["ha_positive"] == report["share"]["ha_negative"] == 0
        assert report["share"]["kgc"] == 1
    else:
        assert report["norm"]["ha_positive"] > 0 and report["norm"]["ha_negative"] > 0
    # the same generators give the same report; training state is untouched
    again = loss_gradient_report(model, batches, sampled_loss(uniform_sampler(N, 8, chunk_size=16),
                                                              1.0, gen(8)), ntat, gen(9))
    assert again == report
    assert ntat.generations == 0 and ntat.generated == []
    assert all(p.grad is None for p in model.parameters())


# -- coverage -----------------------------------------------------------------------------------


def test_epoch_coverage_bins_by_step() -> None:
    generated = [(0, 4), (2, 4), (4, 3), (5, 4), (9, 2), (10, 7)]  # step 10: epoch 3, not run
    assert epoch_coverage(generated, steps_per_epoch=5, num_train=20, epochs=2) == [
        0.55, 0.3]
    assert epoch_coverage([], 5, 20, 3) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("fraction", "refresh"), [(0.25, 2), (0.5, 1), (1.0, 3)])
def test_coverage_is_fraction_over_refresh(model: MultimodalKGE, hier: HierarchicalLevels,
                                           triples: torch.Tensor, fraction: float,
                                           refresh: int) -> None:
    import copy

    kge = copy.deepcopy(model)
    batch_size, epochs = 16, 2
    ntat = NTATLoss(hier, 0.01, WEIGHTS, MARGINS, gen(10), refresh_every=refresh,
                    generate_fraction=fraction)
    g = gen(11)
    loss = with_extra_loss(sampled_loss(uniform_sampler(N, 8, chunk_size=16), 1.0, g), ntat)
    Trainer(kge, triples, loss, epochs=epochs, batch_size=batch_size, lr=1e-3, generator=g,
            progress=False, log=lambda _msg: None).fit()
    steps = math.ceil(len(triples) / batch_size)
    coverage = epoch_coverage(ntat.generated, steps, len(triples), epochs)
    assert len(coverage) == epochs
    # rounding: ceil(fraction * B) positives per generation, whole generations per epoch
    tolerance = math.ceil(fraction * batch_size) / len(triples)
    for value in coverage:
        assert value == pytest.approx(fraction / refresh, abs=tolerance), coverage
    assert len(ntat.generated) == ntat.generations == math.ceil(epochs * steps / refresh)
