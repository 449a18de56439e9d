"""Vocabulary fingerprints: checkpoints and feature tables are refused on a renumbered graph.

A TSV dataset numbers entities in the order they first appear, so a shuffled ``train.tsv``
keeps every count but gives the ids other meanings; the artifacts built on the original must
be refused with one line, not scored.
"""

from __future__ import annotations

import importlib
import random
import shutil
from pathlib import Path

import pytest
import torch
from cli_checks import assert_user_error
from typer.testing import CliRunner

from dhns.cli import app
from dhns.config import KGEConfig, SyntheticConfig
from dhns.data import generate_synthetic, load_dataset
from dhns.data.kg import KnowledgeGraph
from dhns.data.vocabulary import Vocabulary, VocabularyError, fingerprint
from dhns.diffusion.model import DiffusionModel
from dhns.features import FeatureTable, load_precomputed
from dhns.kge.build import build_kge
from dhns.kge.model import KGEModelConfig, MultimodalKGE
from dhns.training.checkpoint import read_checkpoint, save_diffusion, save_kge
from stages.common import run_stage

runner = CliRunner()
DIFFERS = "entity or relation ids differ"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dataset, a copy with train.tsv shuffled, a structure-only checkpoint and a
    sampler for the original, and a params file for the stages."""
    root = tmp_path_factory.mktemp("vocabulary")
    dataset = root / "toy"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=4, num_relations=4,
                                       triples_per_relation=40, image_size=8), dataset)
    shuffled = root / "shuffled"
    shutil.copytree(dataset, shuffled)
    lines = (shuffled / "train.tsv").read_text().splitlines()
    random.Random(0).shuffle(lines)
    (shuffled / "train.tsv").write_text("\n".join(lines) + "\n")
    kg, _ = load_dataset(dataset)
    model, _ = build_kge(KGEConfig(dim=8, modalities=["structure"]), kg, {},
                         torch.Generator().manual_seed(0))
    checkpoint = root / "model.pt"
    save_kge(checkpoint, model, meta={"dataset": kg.name}, vocabulary=kg.vocabulary())
    sampler = root / "sampler.pt"
    save_diffusion(sampler, DiffusionModel(model.scorer.entity_width,
                                           ["structure:tail", "structure:head"], steps=20),
                 vocabulary=kg.vocabulary())
    params = root / "params.yaml"
    params.write_text("device: cpu\n"
                      "kge:\n  dim: 8\n  modalities: [structure, text]\n  compile: false\n"
                      "model:\n  steps: 20\n  epochs: 1\n  batch_size: 256\n"
                      "  sampling_steps: 2\n  modalities: [structure]\n"
                      "retrain:\n  epochs: 1\n")
    return {"dataset": dataset, "shuffled": shuffled, "checkpoint": checkpoint,
            "sampler": sampler, "params": params}


def graphs(toy: dict[str, Path]) -> tuple[KnowledgeGraph, KnowledgeGraph]:
    return load_dataset(toy["dataset"])[0], load_dataset(toy["shuffled"])[0]


# --------------------------------------------------------------------------- the fingerprint


def test_fingerprint_follows_id_order_not_counts(toy: dict[str, Path]) -> None:
    kg, shuffled = graphs(toy)
    assert (kg.num_entities, kg.num_relations) == (shuffled.num_entities,
                                                   shuffled.num_relations)
    assert sorted(kg.entity_keys) == sorted(shuffled.entity_keys)
    assert not kg.vocabulary().matches(shuffled.vocabulary())
    renamed = Vocabulary.of("copy", kg.entity_keys, kg.relation_keys)
    assert renamed.matches(kg.vocabulary())  # a renamed copy keeps its ids
    # keys are delimited: moving a character between two keys changes the hash
    assert fingerprint(["ab", "c"], ["r"]) != fingerprint(["a", "bc"], ["r"])
    assert Vocabulary.from_dict(kg.vocabulary().to_dict()) == kg.vocabulary()
    assert Vocabulary.from_dict(None) is None


def test_checkpoint_records_vocabulary(toy: dict[str, Path]) -> None:
    kg, _ = graphs(toy)
    obj = read_checkpoint(toy["checkpoint"], "kge")
    assert obj["vocabulary"] == kg.vocabulary().to_dict()


# --------------------------------------------------------------------------- the CLI


def test_evaluate_refuses_shuffled_dataset(toy: dict[str, Path]) -> None:
    kg, shuffled = graphs(toy)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(toy["checkpoint"]),
                                 "--dataset", str(toy["shuffled"]), "--device", "cpu"])
    line = assert_user_error(result, str(toy["checkpoint"]), str(toy["shuffled"]), DIFFERS)
    assert kg.vocabulary().sha256[:12] in line and shuffled.vocabulary().sha256[:12] in line


def test_predict_refuses_shuffled_dataset(toy: dict[str, Path]) -> None:
    kg, _ = graphs(toy)
    h, r, _ = kg.train[0].tolist()
    result = runner.invoke(app, ["predict", "--checkpoint", str(toy["checkpoint"]),
                                 "--dataset", str(toy["shuffled"]), "--head",
                                 kg.entity_names[h], "--relation", kg.relation_names[r]])
    assert_user_error(result, str(toy["checkpoint"]), DIFFERS)


def test_matching_dataset_still_works(toy: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "renamed"
    shutil.copytree(toy["dataset"], copy)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(toy["checkpoint"]),
                                 "--dataset", str(copy), "--device", "cpu", "--json",
                                 "--no-compile"])
    assert result.exit_code == 0, result.output


def test_negatives_refuses_shuffled_dataset_and_foreign_sampler(toy: dict[str, Path],
                                                                tmp_path: Path) -> None:
    kg, shuffled = graphs(toy)
    h, r, _ = kg.train[0].tolist()
    query = ["--params", str(toy["params"]), "--head", kg.entity_names[h], "--relation",
             kg.relation_names[r]]
    result = runner.invoke(app, ["negatives", "--checkpoint", str(toy["checkpoint"]),
                                 "--diffusion", str(toy["sampler"]), "--dataset",
                                 str(toy["shuffled"]), *query])
    assert_user_error(result, str(toy["checkpoint"]), DIFFERS)
    foreign = tmp_path / "foreign.pt"  # a sampler trained on the shuffled graph's KGE
    save_diffusion(foreign, DiffusionModel(16, ["structure:tail", "structure:head"], steps=20),
                 vocabulary=shuffled.vocabulary())
    result = runner.invoke(app, ["negatives", "--checkpoint", str(toy["checkpoint"]),
                                 "--diffusion", str(foreign), "--dataset", str(toy["dataset"]),
                                 *query])
    assert_user_error(result, str(foreign), DIFFERS)


def test_checkpoint_without_vocabulary_is_refused(toy: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    obj = read_checkpoint(toy["checkpoint"], "kge")
    del obj["vocabulary"]  # what dhns wrote before checkpoints carried one
    torch.save(obj, old)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(old), "--dataset",
                                 str(toy["dataset"]), "--device", "cpu"])
    assert_user_error(result, str(old), "no vocabulary fingerprint", "rerunning the stage")


# --------------------------------------------------------------------------- feature tables


def test_feature_table_of_another_graph_is_refused(toy: dict[str, Path], tmp_path: Path) -> None:
    kg, shuffled = graphs(toy)
    path = tmp_path / "text.pt"
    table = FeatureTable(torch.ones(kg.num_entities, 3), torch.ones(kg.num_entities, dtype=bool),
                         vocabulary=kg.vocabulary())
    table.save(path)
    assert FeatureTable.load(path, kg.vocabulary()).vocabulary == kg.vocabulary()
    with pytest.raises(VocabularyError, match=DIFFERS) as info:
        FeatureTable.load(path, shuffled.vocabulary(), "artifacts/prepared")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # a dhns table is checked when given as a precomputed file too ...
    with pytest.raises(VocabularyError, match=DIFFERS):
        load_precomputed(path, kg.num_entities, shuffled.vocabulary())
    # ... a raw tensor is row-aligned by contract, so it takes the graph's vocabulary
    raw = tmp_path / "raw.pth"
    torch.save(torch.ones(kg.num_entities, 3), raw)
    assert load_precomputed(raw, kg.num_entities, shuffled.vocabulary()).vocabulary == (
        shuffled.vocabulary())
    # a table written before tables carried a vocabulary cannot be checked
    FeatureTable(table.features, table.mask).save(path)
    with pytest.raises(VocabularyError, match="no vocabulary fingerprint"):
        FeatureTable.load(path, kg.vocabulary())


# --------------------------------------------------------------------------- the stages


def _project(toy: dict[str, Path], root: Path, prepared: str) -> Path:
    """``root`` as a project: ``artifacts/prepared`` from ``toy[prepared]``, and the pretrain
    checkpoint, sampler and text features built on the original dataset."""
    kg, _ = load_dataset(toy[prepared])
    kg.save(root / "artifacts" / "prepared")
    for name in ("pretrain", "uniform", "retrain"):
        (root / "artifacts" / name).mkdir(parents=True)
        shutil.copy(toy["checkpoint"], root / "artifacts" / name / "model.pt")
    (root / "artifacts" / "diffusion").mkdir()
    shutil.copy(toy["sampler"], root / "artifacts" / "diffusion" / "model.pt")
    original, _ = load_dataset(toy["dataset"])
    n = original.num_entities
    FeatureTable(torch.ones(n, 3), torch.ones(n, dtype=bool),
                 vocabulary=original.vocabulary()).save(root / "artifacts/features/text.pt")
    shutil.copy(toy["params"], root / "params.yaml")
    return root


def _run_stage(stage: str, capsys: pytest.CaptureFixture[str], function: str = "run"
               ) -> tuple[int, str]:
    """``python -m stages.<stage>`` in-process, from the current folder: (exit code, stderr)."""
    module = importlib.import_module(f"stages.{stage}")
    capsys.readouterr()
    try:
        run_stage(getattr(module, function))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("stage, artifact", [
    ("pretrain", "artifacts/features/text.pt"),
    ("diffusion", "artifacts/pretrain/model.pt"),
    ("uniform", "artifacts/pretrain/model.pt"),
    ("retrain", "artifacts/diffusion/model.pt"),
    ("evaluate", "artifacts/pretrain/model.pt"),
])
def test_stage_refuses_mismatching_prepared_graph(toy: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  stage: str, artifact: str) -> None:
    monkeypatch.chdir(_project(toy, tmp_path, "shuffled"))
    code, err = _run_stage(stage, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {artifact}: built on toy")
    assert "artifacts/prepared is shuffled" in lines[0] and DIFFERS in lines[0]
    assert not list(Path().glob("metrics/*.json"))  # refused before any training


def test_diffusion_stage_on_matching_graph_records_vocabulary(
        toy: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(_project(toy, tmp_path, "dataset"))
    Path("artifacts/diffusion/model.pt").unlink()
    code, err = _run_stage("diffusion", capsys)
    assert code == 0, err
    kg = KnowledgeGraph.load("artifacts/prepared")
    obj = read_checkpoint("artifacts/diffusion/model.pt", "diffusion")
    assert obj["vocabulary"] == kg.vocabulary().to_dict()


def test_feature_stage_records_vocabulary(toy: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(_project(toy, tmp_path, "shuffled"))
    Path("params.yaml").write_text("features:\n  text:\n    enabled: false\n")
    code, err = _run_stage("features", capsys, "run_text")
    assert code == 0, err
    kg = KnowledgeGraph.load("artifacts/prepared")
    assert FeatureTable.load("artifacts/features/text.pt", kg.vocabulary()).vocabulary == (
        kg.vocabulary())


def test_save_kge_refuses_a_vocabulary_of_other_counts(tmp_path: Path) -> None:
    model = MultimodalKGE(KGEModelConfig("rotate", 4, 6.0, 9, 2),
                          generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="9 entities"):
        save_kge(tmp_path / "x.pt", model, vocabulary=Vocabulary.of("x", ["a"], ["r"]))
    assert not (tmp_path / "x.pt").exists()
