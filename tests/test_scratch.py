"""``retrain.start: scratch``: both continuation arms train the pretrained architecture from one
fresh initialisation, DHNS with a fresh sampler trained jointly (the reference's regime)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_project import make_project, write_params

from dhns.config import ConfigError, load_params, params_from_dict
from dhns.training.checkpoint import load_kge
from stages.common import PRETRAIN_CKPT, UNIFORM_CKPT


@pytest.mark.parametrize(("retrain", "message"), [
    ({"start": "scratch"}, "needs retrain.joint true"),
    ({"start": "scratch", "joint": True, "mined": "score"}, "cannot mine"),
    ({"diffusion_weight": 0.5}, "needs retrain.joint true and DHNS"),
    ({"diffusion_weight": 0.5, "joint": True, "negatives": "uniform"}, "needs retrain.joint"),
])
def test_config_refuses_scratch_settings_that_cannot_work(retrain: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        params_from_dict({"retrain": retrain})


def test_uniform_only_scratch_needs_no_joint_sampler() -> None:
    params = params_from_dict({"retrain": {"start": "scratch", "negatives": "uniform"}})
    assert params.retrain.start == "scratch"


def test_both_arms_start_from_one_fresh_initialisation(tmp_path: Path, monkeypatch) -> None:
    from stages import pretrain, retrain, uniform

    root = make_project(tmp_path / "project")
    write_params(root, "pretrain", epochs=3)
    write_params(root, "retrain", start="scratch", joint=True, diffusion_weight=0.1, epochs=2,
                 eval_every=1, batch_size=64, generate_fraction=0.5, refresh_every=1,
                 lambda_ha=0.1)
    write_params(root, "model", sampling_steps=4)
    monkeypatch.chdir(root)
    pretrain.run(load_params())
    base = uniform.run(load_params())
    dhns = retrain.run(load_params())
    pretrained, _ = load_kge(PRETRAIN_CKPT, torch.device("cpu"))
    scratch, _ = load_kge(UNIFORM_CKPT, torch.device("cpu"))
    assert not torch.equal(pretrained.entity, scratch.entity)
    # the same fresh start: equal validation MRR before the first epoch, below pretrain's
    assert base["start_valid_mrr"] == dhns["start_valid_mrr"]
    pretrain_history = load_kge(PRETRAIN_CKPT, torch.device("cpu"))[1]["history"]
    assert base["start_valid_mrr"] != max(r.get("valid_mrr", 0.0) for r in pretrain_history)
    assert math.isfinite(dhns["final_loss"])
    assert dhns["loss_gradients"]["start"] is None and dhns["loss_gradients"]["end"]["share"]
    assert dhns["generated_coverage"] == pytest.approx(0.5, abs=0.05)
