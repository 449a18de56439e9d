"""Training loop, ordinary-negative learning on the synthetic KG, and the checkpoint format."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from dhns.data.kg import KnowledgeGraph
from dhns.data.vocabulary import Vocabulary
from dhns.evaluation.evaluator import evaluate
from dhns.evaluation.filter import FilterIndex
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
from dhns.samplers.corruption import uniform_sampler
from dhns.training.checkpoint import (
    CheckpointError,
    load_kge,
    read_checkpoint,
    save_checkpoint,
    save_kge,
)
from dhns.training.kgc import sampled_loss, validator
from dhns.training.trainer import Trainer


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def kg(small_kg: KnowledgeGraph) -> KnowledgeGraph:
    return small_kg


def rotate(kg: KnowledgeGraph, seed: int) -> MultimodalKGE:
    cfg = KGEModelConfig("rotate", 32, 6.0, kg.num_entities, kg.num_relations)
    return MultimodalKGE(cfg, generator=gen(seed))


def train_rotate(kg: KnowledgeGraph, seed: int, epochs: int = 30, **kwargs):
    g = gen(seed)
    model = rotate(kg, seed)
    sampler = uniform_sampler(kg.num_entities, 32, chunk_size=64)
    trainer = Trainer(model, kg.train, sampled_loss(sampler, 1.0, g), epochs=epochs,
                      batch_size=128, lr=0.01, generator=g, progress=False,
                      log=lambda _msg: None, **kwargs)
    return model, trainer.fit()


def test_learns_synthetic_and_is_deterministic(kg: KnowledgeGraph) -> None:
    filt = FilterIndex(kg.all_triples(), kg.num_relations)

    def test_mrr(model: MultimodalKGE) -> float:
        return evaluate(model.link_predictor(), kg.test, filt, kg.num_entities,
                        progress=False)["mrr"]

    untrained = test_mrr(rotate(kg, 0))
    model, result = train_rotate(kg, 0)
    losses = [rec["loss"] for rec in result.history]
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0]
    mrr = test_mrr(model)
    # random ranking gives ~H_N / N ~ 0.03 here; trained RotatE reaches ~0.14-0.21 over seeds
    assert mrr > 16 / kg.num_entities
    assert mrr > 3 * untrained
    assert result.best_epoch == 30 and not result.stopped_early

    again, result2 = train_rotate(kg, 0)
    assert [rec["loss"] for rec in result2.history] == losses
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    other, result3 = train_rotate(kg, 1, epochs=2)
    assert [rec["loss"] for rec in result3.history] != losses[:2]


def test_validator_and_early_stop_on_real_run(kg: KnowledgeGraph) -> None:
    filt = FilterIndex(kg.all_triples(), kg.num_relations)
    validate = validator(kg.valid, filt, kg.num_entities, max_triples=50, batch_size=64,
                         generator=gen(9))
    model, result = train_rotate(kg, 2, epochs=6, validate=validate, eval_every=2, patience=3)
    mrrs = [rec["valid_mrr"] for rec in result.history if "valid_mrr" in rec]
    assert [rec["epoch"] for rec in result.history if "valid_mrr" in rec] == [2, 4, 6]
    assert result.best_valid_mrr == max(mrrs)
    assert validate(model) == pytest.approx(result.best_valid_mrr)


# -- Trainer mechanics with a fake validation ---------------------------------------------------


def toy_model() -> MultimodalKGE:
    return MultimodalKGE(KGEModelConfig("transe", 4, 6.0, 10, 2), generator=gen(0))


def drift_loss(model: MultimodalKGE, batch: torch.Tensor, step: int):
    """Pulls every embedding towards 1: weights change at every step."""
    return (model.entity - 1.0).pow(2).mean() + model.relation.pow(2).mean(), {"extra": 2.0}


def fake_trainer(scores: list[float], epochs: int, patience: int, snapshots: list,
                 eval_every: int = 1, validate_start: bool = False
                 ) -> tuple[Trainer, list[float]]:
    model = toy_model()
    calls: list[float] = []

    def validate(m: MultimodalKGE) -> float:
        assert not m.training  # validated in eval mode
        snapshots.append(copy.deepcopy(m.state_dict()))
        calls.append(scores[len(calls)])
        return calls[-1]

    train = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5], [6, 1, 7], [8, 0, 9]])
    trainer = Trainer(model, train, drift_loss, epochs=epochs, batch_size=2, lr=0.05,
                      generator=gen(0), validate=validate, eval_every=eval_every,
                      patience=patience, progress=False, log=lambda _msg: None,
                      validate_start=validate_start)
    return trainer, calls


def test_early_stopping_restores_best_epoch() -> None:
    snapshots: list[dict] = []
    trainer, calls = fake_trainer([0.1, 0.3, 0.2, 0.25, 0.9, 0.9], epochs=6, patience=2,
                                  snapshots=snapshots)
    result = trainer.fit()
    assert result.stopped_early
    assert calls == [0.1, 0.3, 0.2, 0.25]  # two evaluations without gain after epoch 2
    assert len(result.history) == 4
    assert (result.best_epoch, result.best_valid_mrr) == (2, 0.3)
    assert [rec["valid_mrr"] for rec in result.history] == calls
    assert all(rec["extra"] == 2.0 for rec in result.history)
    assert trainer.step == 4 * 3  # ceil(5 / 2) steps per epoch
    final = trainer.model.state_dict()
    for key, value in snapshots[1].items():  # epoch 2 weights
        assert torch.equal(final[key], value), key
    assert not torch.equal(final["entity"], snapshots[-1]["entity"])
    assert not trainer.model.training


def test_no_early_stop_without_patience_keeps_best() -> None:
    snapshots: list[dict] = []
    trainer, calls = fake_trainer([0.5, 0.1, 0.1], epochs=6, patience=0, snapshots=snapshots,
                                  eval_every=2)
    result = trainer.fit()
    assert not result.stopped_early and len(result.history) == 6
    assert [rec["epoch"] for rec in result.history if "valid_mrr" in rec] == [2, 4, 6]
    assert result.best_epoch == 2
    assert torch.equal(trainer.model.entity.detach(), snapshots[0]["entity"])


def test_validate_start_keeps_starting_weights_when_nothing_beats_them() -> None:
    snapshots: list[dict] = []
    trainer, calls = fake_trainer([0.5, 0.4, 0.5, 0.3], epochs=3, patience=0,
                                  snapshots=snapshots, validate_start=True)
    result = trainer.fit()
    assert calls == [0.5, 0.4, 0.5, 0.3]  # epoch 0, then every epoch
    assert (result.best_epoch, result.best_valid_mrr, result.start_valid_mrr) == (0, 0.5, 0.5)
    for key, value in snapshots[0].items():  # a tie (epoch 2) does not replace the start
        assert torch.equal(trainer.model.state_dict()[key], value), key


def test_validate_start_takes_a_later_improvement() -> None:
    snapshots: list[dict] = []
    trainer, _ = fake_trainer([0.2, 0.1, 0.6], epochs=2, patience=0, snapshots=snapshots,
                              validate_start=True)
    result = trainer.fit()
    assert (result.best_epoch, result.best_valid_mrr) == (2, 0.6)
    assert torch.equal(trainer.model.entity.detach(), snapshots[2]["entity"])


def test_without_validation_keeps_last_weights() -> None:
    model = toy_model()
    train = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5]])
    trainer = Trainer(model, train, drift_loss, epochs=3, batch_size=2, lr=0.05,
                      generator=gen(0), progress=False, log=lambda _msg: None)
    before = model.entity.detach().clone()
    result = trainer.fit()
    assert result.best_epoch == 3 and len(result.history) == 3
    assert not torch.equal(model.entity.detach(), before)
    losses = [rec["loss"] for rec in result.history]
    assert losses == sorted(losses, reverse=True)


def test_non_finite_loss_steps_are_skipped_and_weights_stay_finite() -> None:
    # Steps 2 and 5 produce NaN / inf: they are not applied, the rest train normally.
    model = toy_model()
    train = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5]])
    bad_steps = {2: float("nan"), 5: float("inf")}

    def flaky_loss(m: MultimodalKGE, batch: torch.Tensor, step: int):
        loss, stats = drift_loss(m, batch, step)
        return (loss * bad_steps[step] if step in bad_steps else loss), stats

    lines: list[str] = []
    trainer = Trainer(model, train, flaky_loss, epochs=3, batch_size=2, lr=0.05,
                      generator=gen(0), progress=False, log=lines.append)
    result = trainer.fit()
    assert trainer.step == 6 and result.skipped_steps == 2
    assert sum("skipped step" in line for line in lines) == 2
    assert torch.isfinite(model.entity).all() and torch.isfinite(model.relation).all()
    assert all(math.isfinite(rec["loss"]) for rec in result.history)


def test_a_run_of_non_finite_losses_stops_training() -> None:
    def nan_loss(m: MultimodalKGE, batch: torch.Tensor, step: int):
        loss, stats = drift_loss(m, batch, step)
        return loss * float("nan"), stats

    trainer = Trainer(toy_model(), torch.tensor([[0, 0, 1], [2, 1, 3]] * 8), nan_loss,
                      epochs=3, batch_size=1, lr=0.05, generator=gen(0), progress=False,
                      log=lambda _msg: None)
    with pytest.raises(FloatingPointError, match="10 steps in a row"):
        trainer.fit()


# -- checkpoint ---------------------------------------------------------------------------------


def multimodal_model(name: str) -> MultimodalKGE:
    n, g = 9, gen(4)
    text_mask = torch.tensor([True] * 6 + [False] * 3)
    image_mask = torch.tensor([False, True] * 4 + [True])
    feats = {"text": (torch.randn(n, 5, generator=g) * text_mask[:, None], text_mask),
             "image": (torch.randn(n, 3, generator=g) * image_mask[:, None], image_mask)}
    cfg = KGEModelConfig(name, 4, 6.0, n, 2, [STRUCTURE, "text", "image"], {"text": 5, "image": 3})
    model = MultimodalKGE(cfg, feats, g)
    with torch.no_grad():
        model.fusion.query.normal_(generator=g)
    return model


def all_scores(model: MultimodalKGE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, r = model.config.num_entities, model.config.num_relations
    h, rel, t = torch.meshgrid(torch.arange(n), torch.arange(r), torch.arange(n), indexing="ij")
    triples = torch.stack([h.reshape(-1), rel.reshape(-1), t.reshape(-1)], 1)
    pred = model.link_predictor()
    anchors = torch.arange(n).repeat_interleave(r)
    rels = torch.arange(r).repeat(n)
    with torch.no_grad():
        return (model.score_triples(triples), pred.score_tails(anchors, rels),
                pred.score_heads(rels, anchors))


@pytest.mark.parametrize("name", ["rotate", "complex"])
@pytest.mark.parametrize("multimodal", [False, True], ids=["structure", "multimodal"])
def test_kge_checkpoint_round_trip(tmp_path: Path, name: str, multimodal: bool) -> None:
    if multimodal:
        model = multimodal_model(name)
    else:
        model = MultimodalKGE(KGEModelConfig(name, 4, 6.0, 9, 2), generator=gen(5))
    path = tmp_path / "kge.pt"
    meta = {"dataset": "toy", "history": [{"epoch": 1, "loss": 0.5}]}
    vocabulary = Vocabulary.of("toy", [f"e{i}" for i in range(9)], ["r0", "r1"])
    save_kge(path, model, meta, vocabulary=vocabulary)
    loaded, meta2 = load_kge(path, vocabulary=vocabulary)
    assert meta2 == meta
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.modalities == model.modalities
    state, state2 = model.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys()
    for key in state:
        assert torch.equal(state[key], state2[key]), key
    if multimodal:
        assert {"feat_text", "mask_text", "feat_image", "mask_image"} <= set(state2)
        assert state2["mask_text"].dtype == torch.bool
    for a, b in zip(all_scores(model), all_scores(loaded), strict=True):
        assert torch.equal(a, b)


def test_not_a_checkpoint_raises_with_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file\x00\x01")
    with pytest.raises(CheckpointError, match="garbage.pt") as info:
        load_kge(garbage)
    assert str(garbage) in str(info.value)

    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="not a dhns checkpoint") as info:
        load_kge(plain)
    assert str(plain) in str(info.value)

    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError) as info:
        load_kge(missing)
    assert str(missing) in str(info.value)


def test_wrong_kind_raises_with_path(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    save_checkpoint(path, "diffusion", torch.nn.Linear(2, 2), {"dim": 2},
                    vocabulary=Vocabulary.of("toy", ["a", "b"], ["r"]))
    assert read_checkpoint(path, "diffusion")["config"] == {"dim": 2}
    with pytest.raises(CheckpointError, match="expected kge") as info:
        load_kge(path)
    assert str(path) in str(info.value)


def test_diffusion_checkpoint_of_the_old_kind_name_still_loads(tmp_path: Path) -> None:
    """Diffusion checkpoints written before the rename say kind "sampler" (DVC caches and
    earlier runs hold them); they load as diffusion models, and still not as KGEs."""
    from dhns.diffusion.model import DiffusionModel
    from dhns.training.checkpoint import load_diffusion

    path = tmp_path / "sampler.pt"
    diffusion = DiffusionModel(8, ["structure:tail"], steps=20,
                               generator=torch.Generator().manual_seed(0))
    save_checkpoint(path, "sampler", diffusion, dict(diffusion.hparams),
                    vocabulary=Vocabulary.of("toy", ["a", "b"], ["r"]))
    loaded, _ = load_diffusion(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 diffusion.state_dict().values(), strict=True))
    with pytest.raises(CheckpointError, match="expected kge"):
        load_kge(path)


def test_selection_subset_is_the_validators_subset(kg: KnowledgeGraph) -> None:
    from dhns.training.kgc import selection_subset

    assert torch.equal(selection_subset(7, 0, gen(0)), torch.arange(7))
    assert torch.equal(selection_subset(7, 10, gen(0)), torch.arange(7))
    pick = selection_subset(len(kg.valid), 20, gen(3))
    assert len(pick) == 20 and torch.equal(pick, pick.sort().values)
    assert torch.equal(pick, selection_subset(len(kg.valid), 20, gen(3)))
    # the validator scores exactly these triples: same MRR as evaluating them directly
    model = rotate(kg, 0)
    filt = FilterIndex(kg.all_triples(), kg.num_relations)
    validate = validator(kg.valid, filt, kg.num_entities, 20, 64, gen(3))
    direct = evaluate(model.link_predictor(), kg.valid[pick], filt, kg.num_entities,
                      batch_size=64, progress=False)["mrr"]
    assert validate(model) == pytest.approx(float(direct))
