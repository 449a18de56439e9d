"""The ``mmrns`` sampler: relation-weighted multimodal hard negatives (dhns.samplers.mmrns)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.samplers import SamplerContext, build_sampler, known_samplers
from dhns.samplers.base import own_entities
from dhns.samplers.mmrns import MMRNSOptions, MMRNSSampler, separation

N, R, TEXT_DIM = 40, 3, 6
CLUSTER_A = torch.arange(N) < 20  # entities 0-19 vs 20-39, apart in the text features
EVEN = torch.arange(N) % 2 == 0  # a second split, apart in the structure table


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_cluster_text(noise: float = 0.05) -> Tensor:
    """Cluster A near one axis, cluster B near another: cos ~1 within, ~-1 across once
    standardised."""
    table = noise * torch.randn(N, TEXT_DIM, generator=gen(1))
    table[CLUSTER_A, 0] += 1.0
    table[~CLUSTER_A, 1] += 1.0
    return table


def make_model(modalities: tuple[str, ...] = ("structure", "text"),
               text: Tensor | None = None) -> MultimodalKGE:
    config = KGEModelConfig(model="rotate", dim=8, gamma=6.0, num_entities=N, num_relations=R,
                            modalities=list(modalities),
                            feature_dims={"text": TEXT_DIM} if "text" in modalities else {})
    features = {}
    if "text" in modalities:
        table = text if text is not None else torch.randn(N, TEXT_DIM, generator=gen(2))
        mask = torch.ones(N, dtype=torch.bool)
        mask[-3:] = False  # a few entities without text: the similarity must cope
        features["text"] = (table, mask)
    return MultimodalKGE(config, features=features, generator=gen(0))


def split_structure(model: MultimodalKGE) -> None:
    """Even and odd entities at opposite ends of one direction of the structure table."""
    with torch.no_grad():
        table = 0.05 * torch.randn(model.entity.shape, generator=gen(3))
        table[:, 0] += torch.where(EVEN, 1.0, -1.0)
        model.entity.copy_(table)


def group_triples(members: Tensor, relation: int, count: int, seed: int) -> Tensor:
    """``count`` triples of ``relation`` with heads and tails both among ``members``."""
    ids = members.nonzero().squeeze(1)
    pick = torch.randint(len(ids), (count, 2), generator=gen(seed))
    return torch.stack([ids[pick[:, 0]], torch.full((count,), relation), ids[pick[:, 1]]], 1)


# Relation 0 links cluster-A entities (text tells its entities apart), relation 1 links even
# entities (structure does), relation 2 is random.
TRAIN = torch.cat([group_triples(CLUSTER_A, 0, 60, 4), group_triples(EVEN, 1, 60, 5),
                   group_triples(torch.ones(N, dtype=torch.bool), 2, 60, 6)])


def make_sampler(num_negatives: int = 16, train: Tensor = TRAIN, **options) -> MMRNSSampler:
    return MMRNSSampler(SamplerContext(N, R, train), num_negatives, MMRNSOptions(**options))


def batch_of(relation: int, size: int = 32) -> Tensor:
    # Entity 2 and 4: even and in cluster A, so both splits apply whichever side is corrupted.
    return torch.tensor([[2, relation, 4]]).repeat(size, 1)


def test_registered() -> None:
    assert "mmrns" in known_samplers()
    sampler = build_sampler("mmrns", SamplerContext(N, R, TRAIN), 8)
    assert isinstance(sampler, MMRNSSampler) and sampler.per_positive and sampler.uses_model


def test_shapes_dtype_and_never_own() -> None:
    model = make_model()
    batch = torch.randint(N, (50, 3), generator=gen(7))
    batch[:, 1] %= R
    out = make_sampler(24, pool=32).sample(batch, gen(8), model)
    assert out.candidates.shape == (50, 24) and out.candidates.dtype == torch.long
    assert out.corrupt_tail.shape == (50,) and out.corrupt_tail.dtype == torch.bool
    assert out.candidates.device == batch.device == out.corrupt_tail.device
    assert ((out.candidates >= 0) & (out.candidates < N)).all()
    own = own_entities(batch, out.corrupt_tail)
    assert (out.candidates != own[:, None]).all()
    assert 0 < int(out.corrupt_tail.sum()) < 50  # both sides are corrupted


def test_deterministic_under_a_seeded_generator() -> None:
    model = make_model()
    batch = torch.randint(N, (20, 3), generator=gen(7))
    batch[:, 1] %= R
    first = make_sampler(refresh_every=2).sample(batch, gen(9), model)
    second = make_sampler(refresh_every=2).sample(batch, gen(9), model)
    assert torch.equal(first.candidates, second.candidates)
    assert torch.equal(first.corrupt_tail, second.corrupt_tail)
    other = make_sampler(refresh_every=2).sample(batch, gen(10), model)
    assert not torch.equal(first.candidates, other.candidates)
    # torch's global RNG is never drawn from.
    state = torch.random.get_rng_state()
    make_sampler().sample(batch, gen(9), model)
    assert torch.equal(state, torch.random.get_rng_state())


def test_model_untouched_and_no_model_refused() -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    out = make_sampler().sample(batch_of(0), gen(11), model)
    assert not out.candidates.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="pass the model"):
        make_sampler().sample(batch_of(0), gen(11))


def test_separation_matches_brute_force() -> None:
    table = torch.randn(N, 5, generator=gen(12))
    mask = torch.rand(N, generator=gen(13)) < 0.8
    pairs = torch.unique(TRAIN[:, [1, 2]], dim=0)
    got = separation(table, mask, pairs, R)
    unit = torch.nn.functional.normalize(table, dim=-1)
    present = mask.nonzero().squeeze(1)
    for r in range(R):
        ents = pairs[pairs[:, 0] == r, 1]
        ents = ents[mask[ents]]
        cos = unit[ents] @ unit[ents].T
        within = (cos.sum() - cos.diagonal().sum()) / (len(ents) * (len(ents) - 1))
        against = (unit[ents] @ unit[present].T).mean()
        assert got[r].item() == pytest.approx((within - against).item(), abs=1e-5)


def share(candidates: Tensor, members: Tensor) -> float:
    return members[candidates].float().mean().item()


def test_hard_negatives_come_from_the_own_cluster() -> None:
    model = make_model(text=two_cluster_text())  # structure left random: no cluster there
    sampler = make_sampler(32, uniform_share=0.0, temperature=0.05, pool=128)
    hard = sampler.sample(batch_of(0), gen(14), model).candidates
    assert share(hard, CLUSTER_A) > 0.9  # uniform draws give ~0.5
    mixed = make_sampler(32, uniform_share=0.5, temperature=0.05, pool=128)
    half = mixed.sample(batch_of(0), gen(14), model).candidates
    assert share(half[:, :16], CLUSTER_A) > 0.9  # the hard half
    assert 0.3 < share(half[:, 16:], CLUSTER_A) < 0.7  # the uniform half
    # Uniform only: no hardness at all.
    flat = make_sampler(32, uniform_share=1.0).sample(batch_of(0), gen(14), model).candidates
    assert 0.35 < share(flat, CLUSTER_A) < 0.65


def test_the_relation_decides_which_modality_counts() -> None:
    model = make_model(text=two_cluster_text())
    split_structure(model)
    sampler = make_sampler(32, uniform_share=0.0, temperature=0.05, pool=128)
    weights = sampler.modality_weights(model)  # (side, relation, [structure, text])
    for side in (0, 1):
        assert weights[side, 0, 1] > 0.9  # relation 0's entities share their text
        assert weights[side, 1, 0] > 0.9  # relation 1's share their structure
    by_text = sampler.sample(batch_of(0), gen(15), model).candidates
    by_structure = sampler.sample(batch_of(1), gen(15), model).candidates
    assert share(by_text, CLUSTER_A) > 0.9 and 0.3 < share(by_text, EVEN) < 0.7
    assert share(by_structure, EVEN) > 0.9 and 0.3 < share(by_structure, CLUSTER_A) < 0.7


def test_structure_only_model() -> None:
    model = make_model(("structure",))
    split_structure(model)
    sampler = make_sampler(16, uniform_share=0.0, temperature=0.05, pool=64)
    out = sampler.sample(batch_of(1), gen(16), model)
    assert out.candidates.shape == (32, 16)
    assert share(out.candidates, EVEN) > 0.9
    assert sampler.modality_weights(model).shape == (2, R, 1)


def test_state_round_trip_and_refresh() -> None:
    model = make_model(text=two_cluster_text())
    sampler = make_sampler(refresh_every=2)
    assert sampler.state_dict()["step"] == 0 and "separation" not in sampler.state_dict()
    g = gen(17)
    sampler.sample(batch_of(1), g, model)  # step 0: computes every separation
    start = sampler.state_dict()["separation"]
    split_structure(model)  # the structure table "trains"
    sampler.sample(batch_of(1), g, model)  # step 1: no refresh yet
    assert torch.equal(sampler.state_dict()["separation"], start)
    state = sampler.state_dict()
    resumed = make_sampler(refresh_every=2)
    resumed.load_state_dict(state)
    g_resumed = copy.deepcopy(g)
    a = sampler.sample(batch_of(1), g, model)  # step 2: structure part refreshed
    b = resumed.sample(batch_of(1), g_resumed, model)
    assert torch.equal(a.candidates, b.candidates)
    after = sampler.state_dict()["separation"]
    assert torch.equal(after[..., 1], start[..., 1])  # text never changes
    assert after[1, 1, 0] > start[1, 1, 0] + 0.5  # relation 1's structure now separates
    with pytest.raises(ValueError, match="expects state"):
        resumed.load_state_dict({"cache": torch.zeros(1)})
