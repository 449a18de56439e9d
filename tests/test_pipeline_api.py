"""``dhns.pipeline()``: every stage of dvc.yaml in a run folder, its result object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_project import PIPELINE_TINY, dotted

import dhns
from dhns.config import ConfigError
from dhns.records import merge_records
from dhns.runs import StageFailed, stage_commands

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("pipeline") / "run"
    # The tiny settings as overrides, one given in the keyword form (``__`` for the dots).
    overrides = dotted(PIPELINE_TINY)
    epochs = overrides.pop("retrain.epochs")
    return dhns.pipeline("synthetic", overrides=overrides, workdir=work, project=ROOT,
                         retrain__epochs=epochs)


def test_runs_every_stage_in_order_with_the_overrides(finished) -> None:
    assert list(finished.seconds) == [name for name, _ in stage_commands(ROOT)]
    assert finished.params.retrain.epochs == PIPELINE_TINY["retrain"]["epochs"]
    assert finished.params.kge.dim == PIPELINE_TINY["kge"]["dim"]
    written = yaml.safe_load((finished.workdir / "params.yaml").read_text())
    assert written["kge"]["dim"] == PIPELINE_TINY["kge"]["dim"]
    # The result's metrics are the evaluate stage's files, metrics and report, merged.
    on_disk = [json.loads((finished.workdir / sub / "evaluate.json").read_text())
               for sub in ("metrics", "reports")]
    assert finished.metrics == merge_records(*on_disk)
    assert "by_side" in finished.metrics["dhns"] and "resources" in finished.metrics
    for name in ("pretrain", "uniform", "dhns"):
        assert 0 < finished.metrics[name]["mrr"] <= 1
    assert (finished.workdir / "logs" / "retrain.log").read_text()


def test_models_predict_and_save(finished, tmp_path: Path) -> None:
    model = finished.model
    graph = model.graph
    head, relation = graph.entity_names[0], graph.relation_names[0]
    predictions = model.predict_tails(head, relation, k=3)
    assert [p.rank for p in predictions] == [1, 2, 3]
    assert finished.load_model("uniform") is finished.load_model("uniform")
    with pytest.raises(KeyError, match="choose from"):
        finished.load_model("best")
    saved = finished.save(tmp_path / "kept")
    for rel in ("params.yaml", "metrics/evaluate.json", "reports/evaluate.json",
                "artifacts/retrain/model.pt",
                "artifacts/pretrain/model.pt", "logs/pretrain.log"):
        assert (saved / rel).is_file(), rel
    with pytest.raises(FileExistsError):
        finished.save(saved)


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    work = tmp_path / "run"
    with pytest.raises(ConfigError, match="kge.dimm"):
        dhns.pipeline("synthetic", overrides={"kge.dimm": 3}, workdir=work, project=ROOT)
    assert not work.exists()
    (work / "x").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not empty"):
        dhns.pipeline("synthetic", workdir=work, project=ROOT)


def test_a_failing_stage_names_itself_with_its_log(tmp_path: Path) -> None:
    # A dataset that is not in the project's data folder: the prepare stage fails.
    with pytest.raises(StageFailed, match="stage prepare failed") as info:
        dhns.pipeline("no-such-dataset", workdir=tmp_path / "run", project=ROOT)
    assert "no-such-dataset" in str(info.value)
