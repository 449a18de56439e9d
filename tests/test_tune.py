"""``dhns tune``: the search space file, a tiny study, resuming it, and its tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from tiny_project import make_project
from typer.testing import CliRunner

from dhns.cli import app
from dhns.config import ConfigError, load_params, to_dict
from dhns.tune import load_space, with_overrides

SPACE = {"pretrain.lr": {"log": [0.001, 0.05]}, "kge.loss": {"choice": ["ns", "shared"]},
         "kge.dim": {"int": [4, 8], "step": 4}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("tune") / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"].update(epochs=2, eval_every=1)
    params["kge"].update(shared_pool=16)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return root


def _space_error(tmp_path: Path, space: dict) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(ConfigError) as info:
        load_space(path, to_dict(load_params(Path(__file__).parents[1] / "params.yaml")))
    return str(info.value)


def test_space_errors_name_the_file_and_key(tmp_path: Path) -> None:
    assert "space.yaml: kge.nope: " in _space_error(tmp_path, {"kge.nope": {"range": [0, 1]}})
    assert "low < high" in _space_error(tmp_path, {"pretrain.lr": {"log": [0.1, 0.01]}})
    assert "log needs low > 0" in _space_error(tmp_path, {"kge.n3": {"log": [0, 0.1]}})
    assert "exactly one of" in _space_error(tmp_path, {"kge.dim": {"int": [1, 2],
                                                                   "choice": [1]}})
    # a value the params schema refuses, at either end of the range
    assert "0 is not accepted" in _space_error(tmp_path, {"kge.dim": {"int": [0, 8]}})
    assert "'adam' is not accepted" in _space_error(tmp_path,
                                                    {"kge.loss": {"choice": ["ns", "adam"]}})


def test_overrides_set_dotted_keys_on_a_copy() -> None:
    base = {"kge": {"dim": 4}}
    assert with_overrides(base, {"kge.dim": 8, "pretrain.lr": 0.1}) == {
        "kge": {"dim": 8}, "pretrain": {"lr": 0.1}}
    assert base == {"kge": {"dim": 4}}


def test_a_study_runs_writes_its_tables_and_resumes(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    runner = CliRunner()
    first = runner.invoke(app, ["tune", "--space", "space.yaml", "--trials", "2",
                                "--out", "study"])
    assert first.exit_code == 0, first.output
    assert "best: trial" in first.output and "-S pretrain.lr=" in first.output
    rows = list(csv.DictReader((project / "study" / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert all(r["state"] == "complete" and 0 < float(r["valid_mrr"]) <= 1 for r in rows)
    assert {r["kge.loss"] for r in rows} <= {"ns", "shared"}
    best = yaml.safe_load((project / "study" / "best.yaml").read_text())
    assert best["valid_mrr"] == max(float(r["valid_mrr"]) for r in rows)
    assert set(best["overrides"]) == set(SPACE)
    # the same folder resumes the study: one more trial, numbered after the first two
    again = runner.invoke(app, ["tune", "--space", "space.yaml", "--trials", "1",
                                "--out", "study"])
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader((project / "study" / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2"]


def test_a_bad_space_is_one_line_and_writes_nothing(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    (project / "bad.yaml").write_text("kge.dim: {int: [8, 4]}\n")
    result = CliRunner().invoke(app, ["tune", "--space", "bad.yaml", "--out", "bad-study"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: bad.yaml: kge.dim:")
    assert not (project / "bad-study").exists()
