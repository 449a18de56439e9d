"""All-pairs scoring (``Scorer.match_all``) and the fused RotatE kernels (dhns.kge.fused)."""

from __future__ import annotations

import pytest
import torch

from dhns.kge import build
from dhns.kge.build import compile_scoring
from dhns.kge.fused import pairwise_rotate_distance
from dhns.kge.loss import kge_loss
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.kge.scoring import SCORERS, make_scorer
from dhns.samplers.corruption import uniform_sampler

GAMMA = 6.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_match_all_is_match_over_all_pairs(name: str) -> None:
    scorer = make_scorer(name, 4, GAMMA)
    scorer.fuse()
    g = gen(0)
    q = torch.randn(3, 5, scorer.entity_width, generator=g)
    c = torch.randn(3, 7, scorer.entity_width, generator=g)
    out = scorer.match_all(q, c)
    assert out.shape == (3, 5, 7)
    for gi in range(3):
        for si in range(5):
            torch.testing.assert_close(out[gi, si], scorer.match(q[gi, si], c[gi]))


def test_fused_rotate_matches_eager_values_and_gradients() -> None:
    g = gen(1)
    q = torch.randn(4, 6, 2 * 5, generator=g, requires_grad=True)
    c = torch.randn(4, 9, 2 * 5, generator=g, requires_grad=True)
    weights = torch.randn(4, 6, 9, generator=g)
    eager = make_scorer("rotate", 5, GAMMA)
    fused = make_scorer("rotate", 5, GAMMA)
    assert fused.fuse() and fused.fused and not eager.fused
    grads = []
    for scorer in (eager, fused):
        out = scorer.match_all(q, c)
        (out * weights).sum().backward()
        grads.append((out.detach(), q.grad.clone(), c.grad.clone()))
        q.grad = c.grad = None
    for ref, got in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_fused_rotate_gradcheck_float64() -> None:
    g = gen(2)
    q = torch.randn(2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(2, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(pairwise_rotate_distance, (q, c))


def test_fused_rotate_zero_difference_has_zero_finite_gradient() -> None:
    # hypot's gradient at 0 is 0/0 = NaN; a query that lands exactly on a candidate must not
    # poison the step.
    q = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], requires_grad=True)  # (1, 1, 2d), d = 2
    c = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]]], requires_grad=True)
    dist = pairwise_rotate_distance(q, c)
    torch.testing.assert_close(dist, torch.tensor([[[0.0, 1.0]]]))
    dist[0, 0, 0].backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(c.grad).all()
    assert q.grad.abs().sum() == 0 and c.grad.abs().sum() == 0


def test_eager_rotate_zero_difference_has_zero_finite_gradient() -> None:
    # The eager score (positives, L_HA, ranking without compile) follows the same rule.
    scorer = make_scorer("rotate", 2, GAMMA)
    q = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    c = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    score = scorer.match(q, c)
    torch.testing.assert_close(score, torch.tensor([GAMMA]))
    score.sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() == 0


def test_pairwise_rotate_distance_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="expected"):
        pairwise_rotate_distance(torch.zeros(2, 3, 4), torch.zeros(3, 5, 4))


def test_fused_training_loss_and_ranking_match_eager() -> None:
    cfg = KGEModelConfig("rotate", 6, GAMMA, num_entities=30, num_relations=3)
    eager, fused = (MultimodalKGE(cfg, generator=gen(3)) for _ in range(2))
    fused.scorer.fuse()
    g = gen(4)
    batch = torch.stack([torch.randint(30, (13,), generator=g),
                         torch.randint(3, (13,), generator=g),
                         torch.randint(30, (13,), generator=g)], 1)
    negatives = uniform_sampler(30, 8, chunk_size=4).sample(batch, gen(5))
    losses = []
    for model in (eager, fused):
        loss = kge_loss(model, batch, negatives, temperature=1.0)
        loss.backward()
        losses.append((loss.detach(), model.entity.grad.clone(), model.relation.grad.clone()))
    for ref, got in zip(*losses, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    anchors, rels = batch[:, 0], batch[:, 1]
    for side in ("score_tails", "score_heads"):
        args = (anchors, rels) if side == "score_tails" else (rels, anchors)
        torch.testing.assert_close(getattr(fused.link_predictor(), side)(*args),
                                   getattr(eager.link_predictor(), side)(*args),
                                   rtol=1e-5, atol=1e-4)


def test_compile_scoring_reports_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")

    def model(name: str) -> MultimodalKGE:
        return MultimodalKGE(KGEModelConfig(name, 2, GAMMA, 5, 2), generator=gen(0))

    off = model("rotate")
    assert "kge.compile is false" in compile_scoring(off, False, cpu) and not off.scorer.fused
    on = model("rotate")
    assert "fused" in compile_scoring(on, True, cpu) and on.scorer.fused
    assert "matrix product" in compile_scoring(model("distmult"), True, cpu)
    monkeypatch.setattr(build.shutil, "which", lambda _name: None)
    no_cc = model("rotate")
    note = compile_scoring(no_cc, True, cpu)
    assert note.startswith("warning: no C++ compiler") and not no_cc.scorer.fused
