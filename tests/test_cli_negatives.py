"""``dhns negatives``: generated negatives per hardness level for one query."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from cli_checks import assert_user_error
from typer.testing import CliRunner

from dhns.cli import app
from dhns.config import SyntheticConfig
from dhns.data import generate_synthetic, load_dataset
from dhns.diffusion.model import DiffusionModel
from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
from dhns.negatives import diffusion_pairs, diffusion_streams
from dhns.training.checkpoint import save_diffusion, save_kge

runner = CliRunner()
LEVELS = [0.1, 0.3, 0.5]  # T = 20 -> t = 2, 6, 10


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dataset (raw and prepared), an untrained structure + text RotatE checkpoint, a
    sampler fitted two epochs on its pairs, and a params file."""
    root = tmp_path_factory.mktemp("cli_negatives")
    dataset = root / "toy"
    generate_synthetic(SyntheticConfig(num_entities=60, num_types=4, num_relations=4,
                                       triples_per_relation=40, image_size=8), dataset)
    kg, _ = load_dataset(dataset)
    prepared = root / "prepared"
    kg.save(prepared)
    g = torch.Generator().manual_seed(0)
    n = kg.num_entities
    mask = torch.rand(n, generator=g) > 0.3
    text = torch.randn(n, 6, generator=g) * mask[:, None]
    cfg = KGEModelConfig("rotate", 8, 6.0, n, kg.num_relations, [STRUCTURE, "text"],
                         {"text": 6})
    model = MultimodalKGE(cfg, {"text": (text, mask)}, g)
    checkpoint = root / "model.pt"
    save_kge(checkpoint, model, meta={"dataset": kg.name}, vocabulary=kg.vocabulary())
    streams = diffusion_streams(model, ["structure", "text"])
    sampler = DiffusionModel(model.scorer.entity_width, streams, steps=20, generator=g)
    sampler.fit(*diffusion_pairs(model, kg.train, streams), epochs=2, batch_size=128, lr=1e-3,
                generator=g)
    sampler_path = root / "sampler.pt"
    save_diffusion(sampler_path, sampler, vocabulary=kg.vocabulary())
    params = root / "params.yaml"
    params.write_text(f"model:\n  levels: {LEVELS}\n  sampling_steps: 5\nretrain:\n"
                      f"  level_weights: {[1.0] * len(LEVELS)}\n"
                      f"  level_margins: {[0.5] * len(LEVELS)}\n")
    return {"dataset": dataset, "prepared": prepared, "checkpoint": checkpoint,
            "sampler": sampler_path, "params": params}


def invoke(toy: dict[str, Path], *args: str, dataset: str = "dataset"):
    return runner.invoke(app, ["negatives", "--checkpoint", str(toy["checkpoint"]),
                               "--diffusion", str(toy["sampler"]), "--dataset", str(toy[dataset]),
                               "--params", str(toy["params"]), *args])


def levels_of(output: str) -> dict[str, list[list[str]]]:
    """``{"level 1: t=2 ...": [row cells, ...]}`` from the command's output (cells are
    separated by two or more spaces; entity names hold single spaces)."""
    blocks = output.strip().split("\n\n")[1:]  # the first block is the title
    out = {}
    for block in blocks:
        lines = block.splitlines()
        assert lines[1].split() == ["rank", "entity", "distance", "score"]
        out[lines[0]] = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]
    return out


def query(toy: dict[str, Path]) -> tuple[str, str, str]:
    kg, _ = load_dataset(toy["dataset"])
    h, r, t = kg.train[0].tolist()
    return kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]


def test_lists_every_level_with_k_rows(toy: dict[str, Path]) -> None:
    head, relation, _ = query(toy)
    result = invoke(toy, "--head", head, "--relation", relation, "-k", "4")
    assert result.exit_code == 0, result.output
    title = result.stdout.splitlines()[0]
    assert title.startswith(f"({head}, {relation}, ?): generated tails at t = 2, 6, 10 of T = 20")
    assert "5 strided reverse steps" in title
    levels = levels_of(result.stdout)
    assert [name.split("  ")[0] for name in levels] == ["level 1: t=2", "level 2: t=6",
                                                        "level 3: t=10"]
    for name, rows in levels.items():
        assert "generated triple score" in name
        assert len(rows) == 4
        distances = [float(row[2]) for row in rows]
        assert distances == sorted(distances) and distances[0] >= 0
        assert all(len(row) == 4 for row in rows)


def test_generated_heads_and_known_answers(toy: dict[str, Path]) -> None:
    head, relation, tail = query(toy)
    result = invoke(toy, "--tail", tail, "--relation", relation, "-k", "60")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"(?, {relation}, {tail}): generated heads")
    levels = levels_of(result.stdout)
    assert len(levels) == 3
    for rows in levels.values():
        assert len(rows) == 60  # every entity, so the known answer is listed and starred
        starred = [row[1] for row in rows if row[0].endswith("*")]
        assert head in starred


def test_rank_and_nearest_known_answer_per_level(toy: dict[str, Path]) -> None:
    head, relation, tail = query(toy)
    for side, name in (("--head", head), ("--tail", tail)):
        result = invoke(toy, side, name, "--relation", relation, "-k", "60")
        assert result.exit_code == 0, result.output
        for title, rows in levels_of(result.stdout).items():
            found = re.search(r"rank (\d+) among (\d+) real wrong answers  nearest real entity "
                              r"\(Euclidean\) (.+): (a known answer|not a known answer)$", title)
            assert found, title
            rank, wrong = int(found[1]), int(found[2])
            starred = {row[1] for row in rows if row[0].endswith("*")}
            assert wrong == 60 - len(starred) and 1 <= rank <= wrong + 1
            assert (found[3] in starred) == (found[4] == "a known answer")


def test_prepared_folder_and_determinism(toy: dict[str, Path]) -> None:
    head, relation, _ = query(toy)
    raw = invoke(toy, "--head", head, "--relation", relation)
    prepared = invoke(toy, "--head", head, "--relation", relation, dataset="prepared")
    assert raw.exit_code == 0 and prepared.exit_code == 0, prepared.output
    assert raw.stdout == prepared.stdout  # same graph either way, same seed
    other = invoke(toy, "--head", head, "--relation", relation, "--seed", "1")
    assert other.exit_code == 0 and other.stdout != raw.stdout


def test_unknown_name_suggests(toy: dict[str, Path]) -> None:
    head, relation, _ = query(toy)
    typo = head[:-1] + ("x" if head[-1] != "x" else "y")
    bad = invoke(toy, "--head", typo, "--relation", relation)
    line = assert_user_error(bad, "unknown entity", "did you mean")
    assert repr(head) in line
    bad_rel = invoke(toy, "--head", head, "--relation", relation + "zz")
    assert_user_error(bad_rel, "unknown relation", repr(relation))


def test_option_misuse_and_mismatched_sampler(toy: dict[str, Path], tmp_path: Path) -> None:
    head, relation, tail = query(toy)
    both = invoke(toy, "--head", head, "--tail", tail, "--relation", relation)
    assert_user_error(both, "exactly one of --head")
    zero = invoke(toy, "--head", head, "--relation", relation, "-k", "0")
    assert_user_error(zero, "-k")
    wide = tmp_path / "wide.pt"
    save_diffusion(wide, DiffusionModel(32, ["structure:tail", "structure:head"], steps=20),
                 vocabulary=load_dataset(toy["dataset"])[0].vocabulary())
    result = runner.invoke(app, ["negatives", "--checkpoint", str(toy["checkpoint"]),
                                 "--diffusion", str(wide), "--dataset", str(toy["dataset"]),
                                 "--params", str(toy["params"]), "--head", head,
                                 "--relation", relation])
    assert_user_error(result, "32-wide", "16-wide")
    swapped = runner.invoke(app, ["negatives", "--checkpoint", str(toy["sampler"]),
                                  "--diffusion", str(toy["sampler"]), "--dataset",
                                  str(toy["dataset"]), "--params", str(toy["params"]),
                                  "--head", head, "--relation", relation])
    assert_user_error(swapped, "expected kge")


def test_help() -> None:
    result = runner.invoke(app, ["negatives", "--help"])
    assert result.exit_code == 0 and "hardness level" in result.output


def test_bilinear_model_uses_euclidean_distance(toy: dict[str, Path], tmp_path: Path) -> None:
    kg, _ = load_dataset(toy["dataset"])
    model = MultimodalKGE(KGEModelConfig("distmult", 8, 6.0, kg.num_entities, kg.num_relations),
                          generator=torch.Generator().manual_seed(1))
    checkpoint, sampler = tmp_path / "distmult.pt", tmp_path / "sampler.pt"
    save_kge(checkpoint, model, vocabulary=kg.vocabulary())
    save_diffusion(sampler, DiffusionModel(8, ["structure:tail", "structure:head"], steps=20),
                 vocabulary=kg.vocabulary())
    head, relation, _ = query(toy)
    result = runner.invoke(app, ["negatives", "--checkpoint", str(checkpoint), "--diffusion",
                                 str(sampler), "--dataset", str(toy["prepared"]), "--params",
                                 str(toy["params"]), "--head", head, "--relation", relation,
                                 "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "by Euclidean distance" in result.stdout
    levels = levels_of(result.stdout)
    assert len(levels) == 3 and all(len(rows) == 3 for rows in levels.values())
