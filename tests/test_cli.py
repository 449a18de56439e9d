"""The ``dhns`` command line: help, one-line user errors, data import, evaluate, predict."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from cli_checks import assert_user_error
from typer.testing import CliRunner

from dhns.cli import app
from dhns.config import (
    ConfigError,
    KGEConfig,
    SyntheticConfig,
    load_stage_params,
    stage_arguments,
)
from dhns.data import generate_synthetic, load_dataset
from dhns.kge.build import build_kge
from dhns.training.checkpoint import save_kge

runner = CliRunner()

STAGES = ["synthetic", "prepare", "text-features", "image-features", "pretrain", "diffusion",
          "uniform", "retrain", "evaluate"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny synthetic dataset and an (untrained) structure-only checkpoint for it."""
    root = tmp_path_factory.mktemp("toy")
    dataset = root / "toy"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=4, num_relations=4,
                                       triples_per_relation=40, image_size=8), dataset)
    kg, _ = load_dataset(dataset)
    model, _ = build_kge(KGEConfig(dim=8, modalities=["structure"]), kg, {},
                         torch.Generator().manual_seed(0))
    checkpoint = root / "model.pt"
    save_kge(checkpoint, model, meta={"dataset": kg.name}, vocabulary=kg.vocabulary())
    return dataset, checkpoint


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*STAGES, "data", "predict", "results", "negatives", "tune", "samplers", "serve"]:
        assert name in result.output
    data = runner.invoke(app, ["data", "--help"])
    for name in ("import", "download", "generate", "info"):
        assert name in data.output
    for name in [*STAGES, "predict", "results", "tune", "samplers", "serve"]:
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0 and "Usage:" in sub.output
    assert "--set" in runner.invoke(app, ["pretrain", "--help"]).output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("dhns ")


def test_stage_override_errors_name_the_override(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\n")
    bad = runner.invoke(app, ["pretrain", "-p", str(params), "-S", "pretrain.epochs=0"])
    assert_user_error(bad, f"{params} -S pretrain.epochs=0: pretrain.epochs: must be >= 1")
    malformed = runner.invoke(app, ["pretrain", "-p", str(params), "-S", "pretrain.epochs"])
    assert_user_error(malformed, "-S 'pretrain.epochs': expected key=value")


def test_import_corrupt_tsv_is_one_line_and_writes_nothing(tmp_path: Path, toy) -> None:
    dataset, _ = toy
    source = tmp_path / "copy"
    shutil.copytree(dataset, source)
    lines = (source / "train.tsv").read_text().splitlines()
    lines[4] = "only\ttwo"
    (source / "train.tsv").write_text("\n".join(lines) + "\n")
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["data", "import", "mine", "--from", str(source),
                                 "--data-dir", str(data_dir)])
    assert_user_error(result, "train.tsv:5:")
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_import_corrupt_openke(tmp_path: Path) -> None:
    source = tmp_path / "ok"
    source.mkdir()
    files = {"entity2id.txt": "3\na 0\nb 1\nc 2\n", "relation2id.txt": "1\nr 0\n",
             "train2id.txt": "3\n0 1 0\n1 9 0\n2 0 0\n", "valid2id.txt": "1\n0 2 0\n",
             "test2id.txt": "1\n1 0 0\n"}
    for name, text in files.items():
        (source / name).write_text(text)
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["data", "import", "bad", "--from", str(source),
                                 "--data-dir", str(data_dir)])
    assert_user_error(result, "train2id.txt:3:")
    assert not (data_dir / "bad").exists()


def test_import_good(tmp_path: Path, toy) -> None:
    dataset, _ = toy
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["data", "import", "mine", "--from", str(dataset),
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "imported mine" in result.stdout and "60 entities" in result.stdout
    assert (data_dir / "mine" / "train.tsv").is_file()
    info = runner.invoke(app, ["data", "info", str(data_dir / "mine")])
    assert info.exit_code == 0 and "entities" in info.stdout


def test_evaluate_checkpoint_json(toy) -> None:
    dataset, checkpoint = toy
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint),
                                 "--dataset", str(dataset), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert 0 < metrics["mrr"] <= 1 and 0 < metrics["optimistic"]["mrr"] <= 1
    table = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint),
                                "--dataset", str(dataset), "--split", "valid"])
    assert table.exit_code == 0 and "Hits@10" in table.stdout


def test_evaluate_count_mismatch(tmp_path: Path, toy) -> None:
    _, checkpoint = toy
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.tsv").write_text("a\tr\tb\nb\tr\tc\n")
    (other / "valid.tsv").write_text("a\tr\tc\n")
    (other / "test.tsv").write_text("c\tr\ta\n")
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint),
                                 "--dataset", str(other)])
    assert_user_error(result, "60 entities", "3 entities")


def test_predict_top_k_and_unknown_name(toy) -> None:
    dataset, checkpoint = toy
    kg, _ = load_dataset(dataset)
    h, r, _ = kg.train[0].tolist()
    head, relation = kg.entity_names[h], kg.relation_names[r]
    result = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), "--dataset",
                                 str(dataset), "--head", head.upper(), "--relation", relation,
                                 "-k", "5"])
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()[3:]  # title, header, rule
    assert len(rows) == 5
    heads = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), "--dataset",
                                str(dataset), "--tail", head, "--relation", relation, "-k", "60"])
    assert heads.exit_code == 0, heads.output
    assert len(heads.stdout.strip().splitlines()) == 3 + 60
    tails = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), "--dataset",
                                str(dataset), "--head", head, "--relation", relation, "-k", "60"])
    assert "*" in tails.stdout  # the train triple's tail is a known answer
    typo = head[:-1] + ("x" if head[-1] != "x" else "y")
    bad = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), "--dataset",
                              str(dataset), "--head", typo, "--relation", relation])
    line = assert_user_error(bad, "unknown entity", "did you mean")
    assert repr(head) in line


def test_results_table(tmp_path: Path) -> None:
    five = {"mrr": 0.3, "mr": 12.0, "hits@1": 0.2, "hits@3": 0.35, "hits@10": 0.5}
    metrics = {name: {**five, "optimistic": {**five, "mrr": 0.31}}
               for name in ("dhns", "pretrain", "uniform")}
    path = tmp_path / "evaluate.json"
    path.write_text(json.dumps(metrics))
    result = runner.invoke(app, ["results", "--metrics", str(path)])
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()[2:]
    assert [row.split()[0] for row in rows] == ["pretrain", "uniform", "dhns"]
    assert "0.3100" in rows[0]
    missing = runner.invoke(app, ["results", "--metrics", str(tmp_path / "none.json")])
    assert_user_error(missing, "none.json")


def test_unknown_params_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\nkge:\n  dimm: 8\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["prepare", "--params", str(params)])
    assert_user_error(result, "kge.dimm")
    gen = runner.invoke(app, ["data", "generate", "--params", str(params)])
    assert_user_error(gen, "kge.dimm")


def test_stage_arguments_round_trip(tmp_path: Path) -> None:
    """What ``dhns NAME`` passes to ``stages/run NAME``, the stage reads back (validated)."""
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\n")
    argv = stage_arguments(params, ["seed=3", "kge.dim=16"])
    loaded = load_stage_params(argv)
    assert (loaded.seed, loaded.kge.dim) == (3, 16)
    with pytest.raises(ConfigError, match="unexpected stage argument '--seed'"):
        load_stage_params([*argv, "--seed", "4"])
    with pytest.raises(ConfigError, match="-S needs a value"):
        load_stage_params([*argv, "-S"])
    with pytest.raises(ConfigError, match="seed: must be"):
        load_stage_params([*argv, "-S", "seed=-1"])


@pytest.mark.parametrize(("script", "status"), [
    ("exit 0", 0), ("exit 1", 1), ("exit 130", 130), ("kill -TERM $$", 128 + 15)])
def test_stage_exit_status_is_the_childs(script: str, status: int) -> None:
    """A stage's exit status is the command's, as a shell reports it (128 + N for signal N)."""
    from dhns.cli.stages import wait_in_foreground

    assert wait_in_foreground(subprocess.Popen(["sh", "-c", script])) == status


def test_evaluate_option_misuse(toy) -> None:
    dataset, checkpoint = toy
    alone = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint)])
    assert_user_error(alone, "--dataset")
    stage_only = runner.invoke(app, ["evaluate", "--split", "valid"])
    assert_user_error(stage_only, "--checkpoint")
    zero = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--dataset",
                               str(dataset), "--batch-size", "0"])
    assert_user_error(zero, "--batch-size")


def test_every_pipeline_stage_has_a_command() -> None:
    """``dvc.yaml``'s stages and the CLI's stage commands are the same set (``_`` -> ``-``)."""
    import yaml

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    commands = {c.name for c in app.registered_commands}
    missing = [s for s in stages["stages"] if s.replace("_", "-") not in commands]
    assert not missing, f"pipeline stages without a dhns command: {missing}"
