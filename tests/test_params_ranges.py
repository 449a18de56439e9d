"""Every numeric param has a range, checked on load (naming the key) before any work, and the
metrics JSON is strict: never NaN or Infinity."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_project import make_project, write_params

from dhns.config import (
    ConfigError,
    Params,
    load_params,
    numeric_fields,
    params_from_dict,
    to_dict,
)
from dhns.io import atomic_write_json
from dhns.training.trainer import TrainResult
from stages.common import run_stage
from stages.reporting import write_history

ROOT = Path(__file__).resolve().parents[1]


def strict_loads(text: str) -> object:
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as RFC 8259 does."""
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_every_numeric_key_declares_a_range_its_default_meets() -> None:
    keys = numeric_fields()
    assert len(keys) > 40
    missing = [key for key, f in keys if "range" not in f.metadata]
    assert not missing, f"numeric params without a range: {missing}"
    params_from_dict(to_dict(Params()))  # every default goes through the checks
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize(("raw", "message"), [
    ({"pretrain": {"epochs": 0}}, "pretrain.epochs: must be >= 1, got 0"),
    ({"pretrain": {"epochs": -3}}, "pretrain.epochs: must be >= 1, got -3"),
    ({"model": {"epochs": 0}}, "model.epochs: must be >= 1, got 0"),
    ({"retrain": {"epochs": 0}}, "retrain.epochs: must be >= 1, got 0"),
    ({"kge": {"dim": 0}}, "kge.dim: must be >= 1, got 0"),
    ({"kge": {"num_negatives": 0}}, "kge.num_negatives: must be >= 1, got 0"),
    ({"kge": {"gamma": 0}}, "kge.gamma: must be > 0, got 0.0"),
    ({"pretrain": {"lr": 0}}, "pretrain.lr: must be > 0, got 0.0"),
    ({"pretrain": {"lr": "-1e-3"}}, "pretrain.lr: must be > 0, got -0.001"),
    ({"pretrain": {"lr": float("nan")}}, "pretrain.lr: must be > 0, got nan"),
    ({"pretrain": {"batch_size": 0}}, "pretrain.batch_size: must be >= 1, got 0"),
    ({"pretrain": {"patience": -1}}, "pretrain.patience: must be >= 0, got -1"),
    ({"pretrain": {"eval_every": 0}}, "pretrain.eval_every: must be >= 1, got 0"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size: must be >= 1, got 0"),
    ({"model": {"levels": [0.5, 1.5]}}, "model.levels[1]: must be in (0, 1), got 1.5"),
    ({"model": {"levels": [0.0, 0.5]}}, "model.levels[0]: must be in (0, 1), got 0.0"),
    ({"model": {"levels": [0.1, 0.5, 0.2, 0.6]}},
     "model.levels[2]: must be greater than model.levels[1] (0.5), got 0.2"),
    ({"model": {"levels": []}}, "model.levels: must not be empty"),
    ({"model": {"steps": 1}}, "model.steps: must be >= 2, got 1"),
    ({"model": {"sampling_steps": 0}}, "model.sampling_steps: must be >= 1, got 0"),
    ({"model": {"beta_end": 1.0}}, "model.beta_end: must be in (0, 1), got 1.0"),
    ({"model": {"beta_start": 0.05}},
     "model.beta_start: must be <= model.beta_end (0.02), got 0.05"),
    ({"model": {"levels": [0.1, 0.5]}},
     "retrain.level_weights: needs one entry per model.levels entry (2), got 4"),
    ({"retrain": {"level_margins": [0.5]}},
     "retrain.level_margins: needs one entry per model.levels entry (4), got 1"),
    ({"retrain": {"level_weights": [0, 0, 0, 0]}}, "retrain.level_weights: must not all be 0"),
    ({"retrain": {"level_weights": [1, -1, 1, 1]}},
     "retrain.level_weights[1]: must be >= 0, got -1.0"),
    ({"retrain": {"generate_fraction": 0}},
     "retrain.generate_fraction: must be in (0, 1], got 0.0"),
    ({"retrain": {"refresh_every": 0}}, "retrain.refresh_every: must be >= 1, got 0"),
    ({"retrain": {"lambda_ha": -0.1}}, "retrain.lambda_ha: must be >= 0, got -0.1"),
    ({"data": {"min_valid": -1}}, "data.min_valid: must be >= 0, got -1"),
    ({"data": {"synthetic": {"missing_image": 1.5}}},
     "data.synthetic.missing_image: must be in [0, 1], got 1.5"),
    ({"features": {"image": {"batch_size": 0}}},
     "features.image.batch_size: must be >= 1, got 0"),
    ({"seed": -1}, "seed: must be in [0, 4294967295], got -1"),
])
def test_out_of_range_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        params_from_dict(raw)
    assert str(info.value) == message


def test_levels_refused_at_load_with_the_file_and_key(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["levels"] = [0.5, 1.5]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"params.yaml: model\.levels\[1\]: must be in"):
        load_params(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("ranges") / "project")


@pytest.mark.parametrize("epochs", [0, -3])
def test_bad_epochs_stop_before_any_work_and_keep_the_model(
        prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], epochs: int) -> None:
    from stages import pretrain

    project = tmp_path / "project"
    shutil.copytree(prepared, project)
    model = project / "artifacts" / "pretrain" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"the trained model")
    write_params(project, "pretrain", epochs=epochs)
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as info:
        run_stage(pretrain.run, report="pretrain")
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        f"error: params.yaml: pretrain.epochs: must be >= 1, got {epochs}\n")
    assert model.read_bytes() == b"the trained model"
    assert not (project / "metrics" / "pretrain.json").exists()
    assert not (project / "reports" / "pretrain.json").exists()


def test_metrics_json_maps_non_finite_numbers_to_null(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    atomic_write_json(path, {"mrr": math.nan, "by": {"x": [math.inf, -math.inf, 0.5]},
                             "t": (1.0, math.nan)})
    assert strict_loads(path.read_text()) == {"mrr": None, "by": {"x": [None, None, 0.5]},
                                              "t": [1.0, None]}


def test_history_without_validation_or_finite_loss_is_strict(tmp_path: Path) -> None:
    # No validation ran (best_valid_mrr stays NaN) and every step of the epoch was skipped.
    result = TrainResult(history=[{"epoch": 1, "loss": math.nan, "seconds": 0.1}])
    summary = write_history("pretrain", result, tmp_path / "metrics", tmp_path / "reports",
                            tmp_path / "plots")
    assert summary["best_valid_mrr"] is None and summary["final_loss"] is None
    metrics = strict_loads((tmp_path / "metrics" / "pretrain.json").read_text())
    assert metrics["best_valid_mrr"] is None and metrics["final_loss"] is None
    report = strict_loads((tmp_path / "reports" / "pretrain.json").read_text())
    assert {"seconds", "seconds_per_epoch"} <= set(report) and "best_valid_mrr" not in report
    assert (tmp_path / "plots" / "pretrain.csv").read_text() == "epoch,loss,valid_mrr\n1,,\n"


def test_overrides_are_read_as_yaml_and_validated(tmp_path: Path) -> None:
    from dhns.config import load_params

    path = tmp_path / "params.yaml"
    path.write_text("kge:\n  dim: 16\n")
    params = load_params(path, ["kge.dim=32", "kge.modalities=[structure, text]",
                                "pretrain.lr=1e-3", "kge.reciprocal=true"])
    assert (params.kge.dim, params.kge.modalities) == (32, ["structure", "text"])
    assert params.pretrain.lr == 1e-3 and params.kge.reciprocal is True
    assert load_params(path).kge.dim == 16  # the file itself is not changed
    with pytest.raises(ConfigError, match="-S kge.dim.x=1: kge.dim.x: dim is not a section"):
        load_params(path, ["kge.dim.x=1"])


@pytest.mark.parametrize("enabled", [True, False])
def test_stages_run_under_the_deterministic_switch(tmp_path: Path, monkeypatch,
                                                   enabled: bool) -> None:
    import torch

    from stages.common import run_stage

    (tmp_path / "params.yaml").write_text(f"deterministic: {str(enabled).lower()}\n")
    monkeypatch.chdir(tmp_path)
    seen = []
    before = torch.are_deterministic_algorithms_enabled()
    try:
        run_stage(lambda params: seen.append(torch.are_deterministic_algorithms_enabled()))
    finally:
        torch.use_deterministic_algorithms(before)
    assert seen == [enabled]
