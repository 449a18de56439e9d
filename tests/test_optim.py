"""RowAdam: lazy row updates of a sparse-gradient table, fused dense Adam for the rest."""

from __future__ import annotations

import copy

import pytest
import torch

from dhns.config import ConfigError, params_from_dict
from dhns.data.kg import KnowledgeGraph
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.optim import RowAdam, adam
from dhns.samplers.corruption import uniform_sampler
from dhns.training.kgc import SPARSE_FROM_ENTITIES, sampled_loss, sparse_updates
from dhns.training.trainer import Trainer


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_tables(seed: int) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    g = gen(seed)
    return (torch.nn.Parameter(torch.randn(20, 6, generator=g)),
            torch.nn.Parameter(torch.randn(6, 3, generator=g)))


def step_losses(table, dense, optimizer, sparse: bool, steps: int = 5) -> None:
    """A few steps of a loss that gathers rows of ``table`` (some twice) and uses ``dense``."""
    g = gen(7)
    for _ in range(steps):
        ids = torch.randint(20, (8,), generator=g)
        ids[1] = ids[0]  # one row gathered twice: its two gradients must add up
        rows = torch.nn.functional.embedding(ids, table, sparse=sparse)
        loss = (rows @ dense).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_dense_gradients_take_torch_adam_bit_for_bit() -> None:
    ours, theirs = two_tables(0), two_tables(0)
    step_losses(*ours, RowAdam(ours, lr=0.01), sparse=False)
    step_losses(*theirs, torch.optim.Adam(theirs, lr=0.01, fused=True), sparse=False)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_sparse_gradients_follow_sparse_adam_and_leave_other_rows_still() -> None:
    ours, theirs = two_tables(1), two_tables(1)
    start = ours[0].detach().clone()
    g = gen(7)
    touched = torch.zeros(20, dtype=torch.bool)
    for _ in range(5):  # the ids step_losses draws
        ids = torch.randint(20, (8,), generator=g)
        ids[1] = ids[0]
        touched[ids] = True
    step_losses(*ours, RowAdam(ours, lr=0.01), sparse=True)
    optimizers = [torch.optim.SparseAdam([theirs[0]], lr=0.01),
                  torch.optim.Adam([theirs[1]], lr=0.01)]

    class Both:
        def zero_grad(self):
            for o in optimizers:
                o.zero_grad()

        def step(self):
            for o in optimizers:
                o.step()

    step_losses(*theirs, Both(), sparse=True)
    assert torch.allclose(ours[0], theirs[0], atol=1e-6)
    assert torch.allclose(ours[1], theirs[1], atol=1e-6)
    assert torch.equal(ours[0][~touched], start[~touched])  # lazy: untouched rows never move
    assert not torch.equal(ours[0][touched], start[touched])


def test_state_round_trip_continues_identically() -> None:
    a = two_tables(2)
    opt_a = RowAdam(a, lr=0.01)
    step_losses(*a, opt_a, sparse=True, steps=3)
    b = tuple(torch.nn.Parameter(p.detach().clone()) for p in a)
    opt_b = RowAdam(b, lr=0.01)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as read back from a file
    step_losses(*a, opt_a, sparse=True, steps=3)
    step_losses(*b, opt_b, sparse=True, steps=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_sparse_training_learns_and_is_deterministic(small_kg: KnowledgeGraph) -> None:
    kg = small_kg
    filt = FilterIndex(kg.all_triples(), kg.num_relations)

    def train(seed: int) -> MultimodalKGE:
        g = gen(seed)
        model = MultimodalKGE(KGEModelConfig("rotate", 32, 6.0, kg.num_entities,
                                             kg.num_relations), generator=gen(seed))
        sampler = uniform_sampler(kg.num_entities, 32, chunk_size=64)
        Trainer(model, kg.train, sampled_loss(sampler, 1.0, g), epochs=30, batch_size=128,
                lr=0.01, generator=g, progress=False, log=lambda _m: None,
                sparse_updates=True).fit()
        return model

    model = train(0)
    assert model.sparse_gradients
    assert isinstance(adam(model.parameters(), 0.01, sparse_rows=True), RowAdam)
    mrr = evaluate(model.link_predictor(), kg.test, filt, kg.num_entities,
                   progress=False)["mrr"]
    assert mrr > 16 / kg.num_entities  # random ranking: ~0.03 here
    again = train(0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_sparse_updates_param() -> None:
    kge = params_from_dict({}).kge
    assert kge.sparse_updates is False and not sparse_updates(kge, 10**7)
    auto = params_from_dict({"kge": {"sparse_updates": "auto"}}).kge
    assert not sparse_updates(auto, SPARSE_FROM_ENTITIES - 1)
    assert sparse_updates(auto, SPARSE_FROM_ENTITIES)
    ce = params_from_dict({"kge": {"sparse_updates": "auto", "loss": "1vsall"}}).kge
    assert not sparse_updates(ce, 10**7)  # every entity's row gets a gradient anyway
    with pytest.raises(ConfigError, match="kge.sparse_updates"):
        params_from_dict({"kge": {"sparse_updates": True, "loss": "kvsall"}})
    with pytest.raises(ConfigError, match="kge.sparse_updates"):
        params_from_dict({"kge": {"sparse_updates": "sometimes"}})


@pytest.mark.parametrize("loss", ["ns", "shared"])
def test_every_gather_gives_sparse_rows_in_a_multimodal_model(small_kg: KnowledgeGraph,
                                                              loss: str) -> None:
    """Fused text + structure, N3, the ns and shared regimes: the entity table's gradient is
    sparse and holds only the rows the batch touched, and the step moves only those."""
    from dhns.training.kgc import kgc_loss

    kg = small_kg
    g = gen(3)
    cfg = KGEModelConfig("rotate", 8, 6.0, kg.num_entities, kg.num_relations,
                         modalities=["structure", "text"], feature_dims={"text": 5})
    text = (torch.randn(kg.num_entities, 5, generator=g),
            torch.rand(kg.num_entities, generator=g) < 0.8)
    model = MultimodalKGE(cfg, {"text": text}, generator=g)
    model.sparse_gradients = True
    kge = params_from_dict({"kge": {"loss": loss, "n3": 0.01, "shared_pool": 20,
                                    "num_negatives": 8}}).kge
    loss_fn = kgc_loss(kge, kg, gen(4))
    optimizer = adam(model.parameters(), 0.01, sparse_rows=True)
    start = model.entity.detach().clone()
    value, _ = loss_fn(model, kg.train[:16], 0)
    value.backward()
    grad = model.entity.grad
    assert grad.is_sparse
    rows = grad.coalesce().indices()[0]
    assert 0 < len(rows) < kg.num_entities
    assert model.projections["text"].weight.grad is not None  # dense parts still train
    optimizer.step()
    moved = (model.entity.detach() != start).any(dim=1)
    touched = torch.zeros(kg.num_entities, dtype=torch.bool)
    touched[rows] = True
    assert moved[touched].any() and not moved[~touched].any()
