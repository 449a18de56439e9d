"""The kbgan negative sampler: shapes, determinism, no gradient to the model, REINFORCE."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

from dhns.config import ConfigError, KGEConfig
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.samplers import SamplerContext, build_sampler, known_samplers, sampler_options
from dhns.samplers.base import own_entities
from dhns.samplers.kbgan import KBGANSampler

N, R, K = 30, 4, 5


def tiny_model(reciprocal: bool = False) -> MultimodalKGE:
    config = KGEModelConfig(model="rotate", dim=8, gamma=6.0, num_entities=N, num_relations=R,
                            modalities=["structure"], reciprocal=reciprocal)
    return MultimodalKGE(config, generator=torch.Generator().manual_seed(0))


def positives(b: int = 16, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(N, (b,), generator=g), torch.randint(R, (b,), generator=g),
                        torch.randint(N, (b,), generator=g)], 1)


def sampler(**options: float) -> KBGANSampler:
    s = build_sampler("kbgan", SamplerContext(N, R), K,
                      KBGANSampler.Options(**{"pool": 12, "dim": 8, **options}))
    assert isinstance(s, KBGANSampler)
    return s


class FavoursSeven:
    """A fake discriminator: every triple scores 0 but those whose corrupted entity is 7."""

    def __init__(self) -> None:
        self.relation = torch.zeros(R, N)
        self.scorer = self

    def entity_embeddings(self, ids: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(ids, N).float()

    def query(self, anchor: Tensor, relation: Tensor, direction: str) -> Tensor:
        return anchor

    def match(self, query: Tensor, candidate: Tensor) -> Tensor:
        return 10.0 * candidate[..., 7] + 0 * query.sum(-1)


def test_registered_with_its_contract() -> None:
    assert "kbgan" in known_samplers()
    assert KBGANSampler.per_positive and KBGANSampler.uses_model and KBGANSampler.cost
    defaults = sampler_options(KGEConfig(negative_sampler="kbgan"))
    assert (defaults.pool, defaults.dim, defaults.lr) == (64, 32, 1e-3)
    with pytest.raises(ConfigError):
        sampler_options(KGEConfig(negative_sampler="kbgan",
                                  sampler_options={"kbgan": {"pool": 0}}))


def test_shapes_dtypes_and_no_own_entity() -> None:
    batch = positives()
    out = sampler().sample(batch, torch.Generator().manual_seed(0), tiny_model())
    assert out.candidates.shape == (len(batch), K) and out.candidates.dtype == torch.long
    assert out.corrupt_tail.shape == (len(batch),) and out.corrupt_tail.dtype == torch.bool
    assert out.candidates.device == batch.device == out.corrupt_tail.device
    assert ((out.candidates >= 0) & (out.candidates < N)).all()
    # Pools of 40 over 30 entities almost surely hold the own entity: replace_own must fire.
    for seed in range(20):
        out = sampler(pool=40).sample(batch, torch.Generator().manual_seed(seed), tiny_model())
        own = own_entities(batch, out.corrupt_tail)
        assert not (out.candidates == own[:, None]).any()


def test_deterministic_under_a_seed() -> None:
    batch, model = positives(), tiny_model()
    runs = []
    for _ in range(2):
        s, g = sampler(), torch.Generator().manual_seed(3)
        runs.append([s.sample(batch, g, model) for _ in range(3)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a.candidates, b.candidates)
        assert torch.equal(a.corrupt_tail, b.corrupt_tail)
    other = sampler().sample(batch, torch.Generator().manual_seed(4), model)
    assert not torch.equal(other.candidates, runs[0][0].candidates)


def test_needs_the_model() -> None:
    with pytest.raises(ValueError, match="kbgan needs the model"):
        sampler().sample(positives(), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("reciprocal", [False, True])
def test_model_untouched_and_generator_learns(reciprocal: bool) -> None:
    model = tiny_model(reciprocal)
    before = copy.deepcopy(model.state_dict())
    model.relation.grad = torch.full_like(model.relation, 0.5)  # a caller's pending gradient
    s, g = sampler(), torch.Generator().manual_seed(0)
    s.sample(positives(), g, model)
    first = {k: v.clone() for k, v in s.state_dict().items()}
    s.sample(positives(seed=2), g, model)
    assert model.entity.grad is None
    assert torch.equal(model.relation.grad, torch.full_like(model.relation, 0.5))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    after = s.state_dict()
    assert not torch.equal(first["entity"], after["entity"])
    assert not torch.equal(first["relation"], after["relation"])
    assert int(after["step"]) == 2


def test_reinforce_raises_the_rewarded_entity() -> None:
    """The discriminator rewards entity 7 only: the generator should learn to propose it."""
    s, g, fake = sampler(pool=N, lr=0.05), torch.Generator().manual_seed(0), FavoursSeven()
    batch = positives(32)
    batch = batch[(batch[:, 0] != 7) & (batch[:, 2] != 7)]  # 7 may be anyone's negative

    def p7() -> float:
        anchors = torch.cat([batch[:, 0], batch[:, 2]])
        everyone = torch.arange(N).expand(len(anchors), N)
        probs = s.scores(anchors, batch[:, 1].repeat(2), everyone).softmax(-1)
        return float(probs[:, 7].mean())

    s.sample(batch, g, fake)
    start = p7()
    for _ in range(40):
        s.sample(batch, g, fake)
    end = p7()
    assert end > 2 * start, (start, end)


def test_state_round_trip_gives_the_same_next_samples() -> None:
    model, batch = tiny_model(), positives()
    s, g = sampler(), torch.Generator().manual_seed(5)
    assert s.state_dict() == {}
    for _ in range(3):
        s.sample(batch, g, model)
    state = s.state_dict()
    assert all(isinstance(v, Tensor) for v in state.values())
    restored = sampler()
    restored.load_state_dict(state)
    g_copy = torch.Generator().set_state(g.get_state())
    for seed in (6, 7):
        a = s.sample(positives(seed=seed), g, model)
        b = restored.sample(positives(seed=seed), g_copy, model)
        assert torch.equal(a.candidates, b.candidates)
        assert torch.equal(a.corrupt_tail, b.corrupt_tail)
    for key, value in s.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    with pytest.raises(ValueError, match="state keys"):
        restored.load_state_dict({"entity": state["entity"]})
