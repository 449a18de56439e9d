"""Contract tests for the KGE backbone (dhns.kge), run over every score function.

PyKEEN-style: the same checks for rotate / transe / distmult / complex: broadcasting shapes,
one scorer serving training (``score_triples``), ranking (``link_predictor``) and the diffusion
condition (``condition`` / ``match``), plus fusion masking, shared-chunk negatives and
Bernoulli corruption probabilities.
"""

from __future__ import annotations

import math

import pytest
import torch

from dhns.kge.fusion import ModalityFusion
from dhns.kge.loss import kge_loss, score_with_negatives, self_adversarial
from dhns.kge.model import STRUCTURE, FrozenPredictor, KGEModelConfig, MultimodalKGE
from dhns.kge.scoring import SCORERS, make_scorer
from dhns.samplers import SamplerContext, build_sampler
from dhns.samplers.corruption import (
    BernoulliSampler,
    bernoulli_tail_probability,
    uniform_sampler,
)

MODELS = ["rotate", "transe", "distmult", "complex"]
# (entity factor, relation factor) of D and Dr in units of d (scoring.py table)
WIDTHS = {"rotate": (2, 1), "transe": (1, 1), "distmult": (1, 1), "complex": (2, 2)}
N, R, DIM, GAMMA = 11, 3, 4, 6.0
TEXT_DIM, IMAGE_DIM = 5, 3


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def features(seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Text and image tables with some entities missing each modality (rows zero, per spec)."""
    g = gen(seed)
    text_mask = torch.ones(N, dtype=torch.bool)
    text_mask[[1, 4, 7]] = False
    image_mask = torch.ones(N, dtype=torch.bool)
    image_mask[[2, 4, 9]] = False
    text = torch.randn(N, TEXT_DIM, generator=g) * text_mask.unsqueeze(-1)
    image = torch.randn(N, IMAGE_DIM, generator=g) * image_mask.unsqueeze(-1)
    return {"text": (text, text_mask), "image": (image, image_mask)}


def make_model(name: str, multimodal: bool = False, seed: int = 0,
               feats: dict | None = None) -> MultimodalKGE:
    if multimodal:
        cfg = KGEModelConfig(name, DIM, GAMMA, N, R, [STRUCTURE, "text", "image"],
                             {"text": TEXT_DIM, "image": IMAGE_DIM})
        model = MultimodalKGE(cfg, feats if feats is not None else features(), gen(seed))
        with torch.no_grad():  # non-zero fusion query so attention weights are not uniform
            model.fusion.query.normal_(generator=gen(seed + 100))
        return model
    return MultimodalKGE(KGEModelConfig(name, DIM, GAMMA, N, R), generator=gen(seed))


def all_triples() -> torch.Tensor:
    """Every (h, r, t) of the small graph: (N * R * N, 3)."""
    h, r, t = torch.meshgrid(torch.arange(N), torch.arange(R), torch.arange(N), indexing="ij")
    return torch.stack([h.reshape(-1), r.reshape(-1), t.reshape(-1)], 1)


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_widths_per_model(name: str) -> None:
    ef, rf = WIDTHS[name]
    scorer = make_scorer(name, DIM, GAMMA)
    assert (scorer.entity_width, scorer.relation_width) == (ef * DIM, rf * DIM)
    model = make_model(name, multimodal=True)
    assert model.entity.shape == (N, ef * DIM)
    assert model.relation.shape == (R, rf * DIM)
    assert model.all_entity_embeddings().shape == (N, ef * DIM)
    assert model.entity_embeddings(torch.tensor([[0, 1, 2], [3, 3, 4]])).shape == (2, 3, ef * DIM)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown KGE model"):
        make_scorer("rescal", DIM, GAMMA)
    assert sorted(SCORERS) == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_score_broadcasting(name: str) -> None:
    scorer = make_scorer(name, DIM, GAMMA)
    g = gen(3)
    d, dr = scorer.entity_width, scorer.relation_width
    b = 5
    h, t, r = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.randn(b, dr,
                                                                                       generator=g)
    pos = scorer.score(h, r, t)
    assert pos.shape == (b,)
    for i in range(b):  # row i only depends on row i
        torch.testing.assert_close(scorer.score(h[i], r[i], t[i]), pos[i])

    c, s, k = 3, 4, 6
    qh = torch.randn(c, s, 1, d, generator=g)
    qr = torch.randn(c, s, 1, dr, generator=g)
    cand = torch.randn(c, 1, k, d, generator=g)
    out = scorer.score(qh, qr, cand)
    assert out.shape == (c, s, k)
    for ci in range(c):
        for si in range(s):
            expected = scorer.score(qh[ci, si, 0].expand(k, d), qr[ci, si, 0].expand(k, dr),
                                    cand[ci, 0])
            torch.testing.assert_close(out[ci, si], expected)

    # queries against all entities: (B, 1, D) vs (1, N, D)
    ents = torch.randn(N, d, generator=g)
    full = scorer.score(h[:, None], r[:, None], ents[None])
    assert full.shape == (b, N)
    torch.testing.assert_close(full[2, 7], scorer.score(h[2], r[2], ents[7]))


# -- one scorer for training, ranking and the condition ----------------------------------------


@pytest.mark.parametrize("multimodal", [False, True], ids=["structure", "multimodal"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("max_elements", [1 << 24, 7], ids=["one-chunk", "many-chunks"])
def test_link_predictor_matches_score_triples(name: str, multimodal: bool,
                                              max_elements: int) -> None:
    model = make_model(name, multimodal)
    triples = all_triples()
    with torch.no_grad():
        expected = model.score_triples(triples).reshape(N, R, N)  # [h, r, t]
    frozen = model.link_predictor()
    pred = FrozenPredictor(frozen.entities, frozen.relations, frozen.scorer, max_elements)
    heads = torch.tensor([0, 4, 10, 4, 7])
    rels = torch.tensor([0, 2, 1, 1, 0])
    tails = pred.score_tails(heads, rels)
    assert tails.shape == (5, N)
    torch.testing.assert_close(tails, expected[heads, rels, :], rtol=1e-5, atol=1e-5)
    head_scores = pred.score_heads(rels, heads)  # here `heads` are the known tails
    assert head_scores.shape == (5, N)
    torch.testing.assert_close(head_scores, expected[:, rels, heads].T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_condition_both_directions_match_score(name: str) -> None:
    scorer = make_scorer(name, DIM, GAMMA)
    g = gen(5)
    d, dr = scorer.entity_width, scorer.relation_width
    h, r, t = (torch.randn(6, d, generator=g), torch.randn(6, dr, generator=g),
               torch.randn(6, d, generator=g))
    score = scorer.score(h, r, t)
    torch.testing.assert_close(scorer.match(scorer.condition(h, r, "tail"), t), score)
    torch.testing.assert_close(scorer.match(scorer.condition(t, r, "head"), h), score)
    if scorer.distance_based:
        torch.testing.assert_close(scorer.distance(h, r, t), GAMMA - score)


@pytest.mark.parametrize("name", ["rotate", "transe"])
def test_distance_condition_is_where_the_answer_lies(name: str) -> None:
    """For distance models the condition is the exact location of the best answer."""
    scorer = make_scorer(name, DIM, GAMMA)
    g = gen(6)
    h = torch.randn(4, scorer.entity_width, generator=g)
    r = torch.randn(4, scorer.relation_width, generator=g)
    t = scorer.condition(h, r, "tail")
    torch.testing.assert_close(scorer.score(h, r, t), torch.full((4,), GAMMA))
    torch.testing.assert_close(scorer.condition(t, r, "head"), h, rtol=1e-5, atol=1e-5)


# -- hand-computed scores ----------------------------------------------------------------------


def rotate_phase(scorer, phases: list[float]) -> torch.Tensor:
    """The relation embedding encoding ``phases`` (radians)."""
    return torch.tensor(phases) * scorer.embedding_range / math.pi


def test_rotate_hand_computed_d1() -> None:
    scorer = make_scorer("rotate", 1, GAMMA)
    assert scorer.embedding_range == pytest.approx((GAMMA + 2.0) / 1)
    r = rotate_phase(scorer, [math.pi / 2])  # multiply by i
    h = torch.tensor([1.0, 0.0])  # [re | im] = 1
    # h * r = i: t = i scores gamma, t = 1 is sqrt(2) away
    assert scorer.score(h, r, torch.tensor([0.0, 1.0])).item() == pytest.approx(GAMMA, abs=1e-6)
    assert scorer.score(h, r, torch.tensor([1.0, 0.0])).item() == pytest.approx(
        GAMMA - math.sqrt(2), abs=1e-6)
    # 3 - 4i is |i - (3 - 4i)| = |-3 + 5i| = sqrt(34) away
    assert scorer.score(h, r, torch.tensor([3.0, -4.0])).item() == pytest.approx(
        GAMMA - math.sqrt(34), abs=1e-5)
    # head direction: t * conj(r) = i * (-i) = 1
    torch.testing.assert_close(scorer.condition(torch.tensor([0.0, 1.0]), r, "head"),
                               torch.tensor([1.0, 0.0]), rtol=0, atol=1e-6)


def test_rotate_hand_computed_d2() -> None:
    scorer = make_scorer("rotate", 2, GAMMA)
    r = rotate_phase(scorer, [math.pi / 2, math.pi])
    h = torch.tensor([1.0, 2.0, 0.0, 0.0])  # h = (1, 2)
    # h * r = (i, -2): exact tail scores gamma, the origin is |i| + |-2| = 3 away
    exact = torch.tensor([0.0, -2.0, 1.0, 0.0])
    torch.testing.assert_close(scorer.condition(h, r, "tail"), exact, rtol=0, atol=1e-6)
    assert scorer.score(h, r, exact).item() == pytest.approx(GAMMA, abs=1e-6)
    assert scorer.score(h, r, torch.zeros(4)).item() == pytest.approx(GAMMA - 3.0, abs=1e-6)


def test_other_models_hand_computed() -> None:
    transe = make_scorer("transe", 2, GAMMA)
    h, r, t = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]), torch.tensor([0.0, 0.0])
    assert transe.score(h, r, t).item() == pytest.approx(GAMMA - (1.5 + 1.0))
    distmult = make_scorer("distmult", 2, GAMMA)
    assert distmult.score(h, r, torch.tensor([2.0, 3.0])).item() == pytest.approx(1.0 - 6.0)
    cx = make_scorer("complex", 1, GAMMA)
    # Re(h r conj(t)) with h = 1 + 2i, r = i, t = 3 - i: h r = -2 + i, * (3 + i) = -7 + i
    score = cx.score(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([3.0, -1.0]))
    assert score.item() == pytest.approx(-7.0)


# -- fusion ------------------------------------------------------------------------------------


def test_fusion_weights_sum_to_one_and_match_formula() -> None:
    m, n, d = 3, 5, 7
    g = gen(7)
    fusion = ModalityFusion(d)
    with torch.no_grad():
        fusion.query.normal_(generator=g)
    emb = torch.randn(m, n, d, generator=g)
    emb[:, :, :m] = torch.eye(m)[:, None, :]  # column j holds modality j's weight after fusion
    mask = torch.ones(m, n, dtype=torch.bool)
    fused = fusion(emb, mask)
    weights = fused[:, :m].T  # (M, n)
    torch.testing.assert_close(weights.sum(0), torch.ones(n))
    expected = torch.softmax(torch.tanh(emb) @ fusion.query, dim=0)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(fused, (expected.unsqueeze(-1) * emb).sum(0))

    # a masked modality gets weight exactly 0, the others still sum to 1
    mask[1, 2] = False
    mask[2, 3] = False
    w = fusion(emb, mask)[:, :m].T
    assert w[1, 2].item() == 0.0 and w[2, 3].item() == 0.0
    torch.testing.assert_close(w.sum(0), torch.ones(n))


def test_zero_query_fusion_is_mean_of_present_modalities() -> None:
    fusion = ModalityFusion(4)  # zero init
    emb = torch.randn(3, 2, 4, generator=gen(8))
    mask = torch.tensor([[True, True], [True, False], [True, False]])
    fused = fusion(emb, mask)
    torch.testing.assert_close(fused[0], emb[:, 0].mean(0))
    torch.testing.assert_close(fused[1], emb[0, 1])  # structure only: no zero vector averaged in


@pytest.mark.parametrize("junk", [1e6, float("nan")], ids=["large", "nan"])
def test_missing_text_row_does_not_affect_fused_embedding(junk: float) -> None:
    feats = features()
    text, text_mask = feats["text"]
    assert not text_mask[4]
    model = make_model("rotate", multimodal=True, feats=feats)
    before = model.all_entity_embeddings().detach()

    changed = dict(feats)
    altered = text.clone()
    altered[4] = junk  # entity 4 has no text: its row carries no information
    changed["text"] = (altered, text_mask)
    model2 = make_model("rotate", multimodal=True, feats=changed)
    after = model2.all_entity_embeddings().detach()
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after, before, rtol=0, atol=0)

    # entity 4 has neither text nor image: its fused embedding is its structure embedding
    torch.testing.assert_close(after[4], model2.entity[4].detach())
    # and changing a row that *is* present does change that entity
    altered2 = text.clone()
    altered2[0] += 1.0
    changed["text"] = (altered2, text_mask)
    model3 = make_model("rotate", multimodal=True, feats=changed)
    assert not torch.allclose(model3.all_entity_embeddings()[0], before[0])


def test_single_entity_with_a_modality_gives_finite_embeddings() -> None:
    """Standardising over one present row must not produce NaN (std of one sample)."""
    feats = features()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[3] = True
    feats["image"] = (feats["image"][0] * mask.unsqueeze(-1), mask)
    model = make_model("transe", multimodal=True, feats=feats)
    assert torch.isfinite(model.all_entity_embeddings()).all()


@pytest.mark.parametrize("name", MODELS)
def test_structure_only_is_plain_lookup(name: str) -> None:
    model = make_model(name)
    assert model.fusion is None
    ids = torch.tensor([[3, 1], [1, 10]])
    torch.testing.assert_close(model.entity_embeddings(ids), model.entity[ids])
    torch.testing.assert_close(model.all_entity_embeddings(), model.entity)


def test_all_masked_modalities_fall_back_to_structure() -> None:
    feats = {k: (v, torch.zeros(N, dtype=torch.bool)) for k, (v, _) in features().items()}
    model = make_model("complex", multimodal=True, feats=feats)
    torch.testing.assert_close(model.all_entity_embeddings(), model.entity)


def test_entity_embeddings_agree_with_full_table() -> None:
    model = make_model("rotate", multimodal=True)
    table = model.all_entity_embeddings()
    ids = torch.tensor([[5, 5, 0], [10, 2, 5]])
    torch.testing.assert_close(model.entity_embeddings(ids), table[ids])


def test_multimodal_gradients_reach_projections_and_query() -> None:
    model = make_model("rotate", multimodal=True)
    model.score_triples(torch.tensor([[0, 1, 2], [3, 0, 5]])).sum().backward()
    for p in (model.entity, model.relation, model.fusion.query,
              model.projections["text"].weight, model.projections["image"].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert not any(b.requires_grad for b in model.buffers())


# -- shared-chunk negatives ------------------------------------------------------------------


def brute_force_negatives(model: MultimodalKGE, triple: torch.Tensor, candidates: torch.Tensor,
                          corrupt_tail: bool) -> torch.Tensor:
    """Scores of ``triple`` with one side replaced by each of ``candidates``, via
    ``score_triples``."""
    k = len(candidates)
    h, r, t = triple.unbind(-1)
    if corrupt_tail:
        rows = torch.stack([h.expand(k), r.expand(k), candidates], 1)
    else:
        rows = torch.stack([candidates, r.expand(k), t.expand(k)], 1)
    return model.score_triples(rows)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("b,chunk_size", [(12, 4), (13, 4), (7, 3), (5, 8), (9, 2)])
def test_score_with_negatives_matches_brute_force(name: str, b: int, chunk_size: int) -> None:
    model = make_model(name, multimodal=name in ("rotate", "complex"))
    g = gen(11)
    batch = torch.stack([torch.randint(N, (b,), generator=g), torch.randint(R, (b,), generator=g),
                         torch.randint(N, (b,), generator=g)], 1)
    sampler = uniform_sampler(N, 6, chunk_size=chunk_size)
    neg = sampler.sample(batch, g)
    chunks = -(-b // chunk_size)
    size = -(-b // chunks)
    assert neg.candidates.shape == (chunks, 6) and neg.corrupt_tail.shape == (b,)
    with torch.no_grad():
        pos, scores = score_with_negatives(model, batch, neg)
        assert pos.shape == (b,) and scores.shape == (b, 6)
        torch.testing.assert_close(pos, model.score_triples(batch), rtol=1e-5, atol=1e-5)
        for i in range(b):
            # positive i sees the candidates of its contiguous chunk, on its chosen side
            ref = brute_force_negatives(model, batch[i], neg.candidates[i // size],
                                        bool(neg.corrupt_tail[i]))
            torch.testing.assert_close(scores[i], ref, rtol=1e-5, atol=1e-5)


def test_kge_loss_matches_manual_formula() -> None:
    model = make_model("rotate")
    g = gen(12)
    batch = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 2, 5], [6, 0, 7], [8, 1, 9]])
    neg = uniform_sampler(N, 4, chunk_size=2).sample(batch, g)
    pos, scores = score_with_negatives(model, batch, neg)
    temp = 0.5
    w = torch.softmax(temp * scores, -1)
    adv = -(w * torch.nn.functional.logsigmoid(-scores)).sum(-1)
    pos_loss = -torch.nn.functional.logsigmoid(pos)
    expected = 0.5 * (pos_loss.mean() + adv.mean())
    torch.testing.assert_close(kge_loss(model, batch, neg, temp), expected)


def test_self_adversarial_weights_are_detached() -> None:
    neg = torch.tensor([[1.0, -2.0, 0.5]], requires_grad=True)
    pos = torch.tensor([0.3])
    _, neg_loss = self_adversarial(pos, neg, 1.0)
    neg_loss.sum().backward()
    w = torch.softmax(neg.detach(), -1)
    expected = w * torch.sigmoid(neg.detach())  # d/ds -w log sigmoid(-s) = w sigmoid(s)
    torch.testing.assert_close(neg.grad, expected)


def test_sampler_is_deterministic_and_in_range() -> None:
    batch = torch.zeros(10, 3, dtype=torch.long)
    s = uniform_sampler(N, 5, chunk_size=4)
    a, b = s.sample(batch, gen(3)), s.sample(batch, gen(3))
    assert torch.equal(a.candidates, b.candidates)
    assert torch.equal(a.corrupt_tail, b.corrupt_tail)
    assert int(a.candidates.min()) >= 0 and int(a.candidates.max()) < N
    with pytest.raises(KeyError, match="unknown negative sampler 'typed'"):
        build_sampler("typed", SamplerContext(N), 5)


# -- Bernoulli -------------------------------------------------------------------------------


def tiny_graph() -> torch.Tensor:
    one_to_n = [(0, 0, t) for t in range(1, 5)]  # one head, 4 tails: tph = 4, hpt = 1
    n_to_one = [(h, 1, 0) for h in range(1, 5)]  # 4 heads, one tail: tph = 1, hpt = 4
    one_to_one = [(1, 2, 2), (3, 2, 4)]
    many = [(h, 3, t) for h in (5, 6) for t in (7, 8, 9)]  # 2 heads x 3 tails: tph 3, hpt 2
    return torch.tensor(one_to_n + n_to_one + one_to_one + many)


def test_bernoulli_tail_probability_known_relations() -> None:
    p = bernoulli_tail_probability(tiny_graph(), num_relations=5)
    # P(corrupt tail) = hpt / (tph + hpt)
    torch.testing.assert_close(p, torch.tensor([1 / 5, 4 / 5, 1 / 2, 2 / 5, 1 / 2]))
    assert p[0] < 0.5  # 1-N: corrupt the head more often


def test_bernoulli_sampler_frequencies() -> None:
    train = tiny_graph()
    s = BernoulliSampler(SamplerContext(10, 5, train), 3, chunk_size=8)
    batch = torch.tensor([[0, 0, 1]] * 2000 + [[1, 1, 0]] * 2000)
    neg = s.sample(batch, gen(4))
    assert neg.corrupt_tail.shape == (4000,)
    rate_1n = neg.corrupt_tail[:2000].float().mean().item()
    rate_n1 = neg.corrupt_tail[2000:].float().mean().item()
    assert rate_1n == pytest.approx(0.2, abs=0.04)
    assert rate_n1 == pytest.approx(0.8, abs=0.04)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_building_never_touches_the_global_rng(name: str) -> None:
    state = torch.random.get_rng_state()
    a = make_model(name, multimodal=True, seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(99)
    b = make_model(name, multimodal=True, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
