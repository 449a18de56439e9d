"""Smoke test of the throughput benchmark (bench/throughput.py) on a tiny generated KG."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import throughput

SMALL = ["--dim", "8", "--batch-size", "32", "--num-negatives", "4", "--batches", "2",
         "--rounds", "2", "--eval-triples", "10", "--eval-batch-size", "4", "--bf16"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only contend on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_openke(directory: Path, n_ent: int = 40, n_rel: int = 3) -> None:
    """A random OpenKE-layout KG (``h t r`` rows with a count header)."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randint(n_ent, (400,), generator=gen)
    t = torch.randint(n_ent, (400,), generator=gen)
    r = torch.randint(n_rel, (400,), generator=gen)
    triples = torch.unique(torch.stack([h, t, r], 1), dim=0)
    triples = triples[triples[:, 0] != triples[:, 1]]
    triples = triples[torch.randperm(len(triples), generator=gen)]
    splits = {"train": triples[:-40], "valid": triples[-40:-20], "test": triples[-20:]}
    directory.mkdir()
    for name, n in (("entity", n_ent), ("relation", n_rel)):
        lines = [str(n)] + [f"{name}_{i}\t{i}" for i in range(n)]
        (directory / f"{name}2id.txt").write_text("\n".join(lines) + "\n")
    for split, rows in splits.items():
        lines = [str(len(rows))] + [" ".join(map(str, row.tolist())) for row in rows]
        (directory / f"{split}2id.txt").write_text("\n".join(lines) + "\n")


def _check(out: Path, with_pykeen: bool) -> dict:
    result = json.loads(out.read_text())
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["torch"]
    assert len(result["loadavg"]["before"]) in (0, 3) and result["loadavg"]["samples"]
    assert set(result["training"]) >= {"ours_fused", "ours_eager", "ours_bf16"}
    assert ("pykeen" in result["training"]) == with_pykeen
    for section in ("training", "evaluation"):
        for entry in result[section].values():
            assert entry["triples_per_s"] > 0 and math.isfinite(entry["seconds_per_epoch"])
    for section in ("training", "evaluation"):
        for name, entry in result[section].items():
            has_ratio = entry["ratio_ours_over_pykeen"] is not None
            assert has_ratio == (with_pykeen and name != "pykeen")
    assert result["evaluation"]["ours_fused"]["timed_triples"] == 10
    assert result["evaluation"]["ours_eager"]["timed_triples"] == 10
    check = result["training"]["ours_bf16"]["loss_check"]
    assert check["loss_rel_diff"] < 0.05 and check["entity_grad_cosine"] > 0.9
    assert check["grad_nonfinite_bf16"] == 0 == check["grad_nonfinite_fp32"]
    assert all(math.isfinite(result["training"][k]["last_loss"])
               for k in ("ours_fused", "ours_eager", "ours_bf16"))
    return result


def test_bench_runs_without_pykeen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny"
    _write_openke(data)
    monkeypatch.setitem(sys.modules, "pykeen", None)  # import pykeen -> ImportError
    monkeypatch.setitem(sys.modules, "pykeen.version", None)
    assert throughput.pykeen_available() is None
    out = tmp_path / "res" / "bench.json"
    assert throughput.main(["--dataset-dir", str(data), "--out", str(out), *SMALL]) == 0
    result = _check(out, with_pykeen=False)
    assert result["pykeen_version"] is None
    table = capsys.readouterr().out
    assert table.startswith("| measurement |") and "link prediction" in table


def test_bench_skip_pykeen_flag(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    _write_openke(data)
    out = tmp_path / "bench.json"
    argv = ["--dataset-dir", str(data), "--out", str(out), "--skip-pykeen", *SMALL]
    assert throughput.main(argv) == 0
    _check(out, with_pykeen=False)


def test_bench_with_pykeen(tmp_path: Path) -> None:
    pytest.importorskip("pykeen", reason="optional: pip install -r bench/requirements.txt")
    data = tmp_path / "tiny"
    _write_openke(data)
    out = tmp_path / "bench.json"
    assert throughput.main(["--dataset-dir", str(data), "--out", str(out), *SMALL]) == 0
    result = _check(out, with_pykeen=True)
    assert result["pykeen_version"] and result["training"]["pykeen"]["timed_triples"] == 64


def _fake_run(path: Path, mrr: float, wall: float, dhns_gain: float = 0.0) -> None:
    metrics = {m: {"mrr": mrr, "hits@1": mrr / 2, "hits@3": mrr, "hits@10": 2 * mrr,
                   "optimistic": {"mrr": mrr + 0.01}} for m in ("pretrain", "uniform", "dhns")}
    metrics["dhns"]["mrr"] = mrr + dhns_gain
    path.write_text(json.dumps({"wall_seconds": wall, "metrics": {"evaluate": metrics}}))


def test_summary_mean_and_spread_over_seeds(tmp_path: Path) -> None:
    from bench import summary

    _fake_run(tmp_path / "MKG-Y-seed0.json", 0.30, 600)
    _fake_run(tmp_path / "MKG-Y-seed2.json", 0.40, 1200)
    _fake_run(tmp_path / "MKG-Y-seed1-lambda1.json", 0.99, 60)  # an ablation: left out
    _fake_run(tmp_path / "DB15K-seed0.json", 0.25, 3000)
    runs = summary.load_runs(tmp_path)
    assert sorted(runs) == ["DB15K", "MKG-Y"] and len(runs["MKG-Y"]) == 2
    lines = summary.table(runs).splitlines()
    assert lines[0].startswith("| dataset | model | MRR |")
    row = next(line for line in lines if line.startswith("| MKG-Y | dhns |"))
    # mean 0.35, sample std of (0.30, 0.40) = 0.0707; 15 minutes of wall per run
    assert "| 0.3500 ± 0.0707 |" in row and "| 0,2 | 15 min |" in row
    single = next(line for line in lines if line.startswith("| DB15K | pretrain |"))
    assert "| 0.2500 | 0.1250 | 0.2500 | 0.5000 | 0.2600 | 0 | 50 min |" in single
    tagged = summary.load_runs(tmp_path, tag="lambda1")
    assert list(tagged) == ["MKG-Y"] and tagged["MKG-Y"][0]["seed"] == 1


def test_summary_dhns_against_uniform_spread(tmp_path: Path) -> None:
    from bench import summary

    # uniform MRR 0.300 / 0.302 (std 0.0014); dhns gains 0.004 and 0.002 (mean 0.003)
    _fake_run(tmp_path / "MKG-W-seed0.json", 0.300, 60, dhns_gain=0.004)
    _fake_run(tmp_path / "MKG-W-seed1.json", 0.302, 60, dhns_gain=0.002)
    _fake_run(tmp_path / "MKG-Y-seed0.json", 0.300, 60, dhns_gain=0.0005)
    _fake_run(tmp_path / "MKG-Y-seed1.json", 0.310, 60, dhns_gain=0.0005)
    _fake_run(tmp_path / "DB15K-seed0.json", 0.25, 60, dhns_gain=-0.001)
    rows = summary.dhns_vs_uniform(summary.load_runs(tmp_path)).splitlines()
    assert "| MKG-W | 0: +0.0040, 1: +0.0020 | +0.0030 | 0.0014 | yes |" in rows
    assert "| MKG-Y | 0: +0.0005, 1: +0.0005 | +0.0005 | 0.0071 | no |" in rows
    assert "| DB15K | 0: -0.0010 | -0.0010 | - (one seed) | - |" in rows


def test_collect_keeps_metrics_and_reports_and_old_results_read_the_same(
        tmp_path: Path) -> None:
    from bench import collect, summary
    from stages.common import write_record

    project = tmp_path / "project"
    evaluation = {m: {"mrr": 0.3, "mr": 9.0, "hits@1": 0.2, "hits@3": 0.3, "hits@10": 0.5,
                      "optimistic": {"mrr": 0.31, "mr": 8.0}} for m in collect.MODELS}
    write_record("evaluate", evaluation, project / "metrics", project / "reports")
    write_record("uniform", {"best_valid_mrr": 0.3, "seconds_per_epoch": 2.0},
                 project / "metrics", project / "reports")
    (project / "params.yaml").write_text("seed: 0\n")
    new = collect.collect(project, "X-seed0", "cmd", 60.0)
    assert new["metrics"]["uniform"] == {"best_valid_mrr": 0.3}
    assert new["reports"]["uniform"] == {"seconds_per_epoch": 2.0}
    assert summary.stage_record(new, "evaluate") == evaluation
    # A result collected before the split: everything under "metrics", no "reports".
    old = {"name": "X-seed1", "wall_seconds": 60.0, "metrics": {"evaluate": evaluation}}
    assert summary.stage_record(old, "evaluate") == evaluation
    assert collect.table_rows(new)[0] == collect.table_rows({**old, "name": "X-seed0"})[0]
    results = tmp_path / "results"
    results.mkdir()
    for result in (new, old):
        (results / f"{result['name']}.json").write_text(json.dumps(result))
    runs = summary.load_runs(results)
    assert [r["seed"] for r in runs["X"]] == [0, 1]
    assert "| X | dhns | 0.3000 ± 0.0000 |" in summary.table(runs)


def test_overhead_interleaves_uniform_and_dhns_steps(tmp_path: Path) -> None:
    from bench import overhead
    from dhns.config import SyntheticConfig, load_params
    from dhns.data import generate_synthetic, load_dataset
    from dhns.diffusion.model import DiffusionModel
    from dhns.kge.model import STRUCTURE, KGEModelConfig, MultimodalKGE
    from dhns.negatives.ntat import ntat_from_params

    generate_synthetic(SyntheticConfig(num_entities=60, num_types=3, num_relations=4,
                                       triples_per_relation=60), tmp_path / "tiny")
    kg, _ = load_dataset(tmp_path / "tiny")
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params.retrain.batch_size = 32
    cfg = KGEModelConfig("rotate", 8, 6.0, kg.num_entities, kg.num_relations, [STRUCTURE], {})

    def load_model() -> MultimodalKGE:
        return MultimodalKGE(cfg, {}, torch.Generator().manual_seed(0))

    sampler = DiffusionModel(16, ["structure:tail", "structure:head"], steps=20)
    ntat = ntat_from_params(params, sampler, torch.Generator().manual_seed(1))
    result = overhead.measure_overhead(load_model, ntat, kg.train, params, rounds=3, steps=4)
    assert result["steps_counted"] == 8
    assert result["steps_per_epoch"] == -(-len(kg.train) // 32)
    split = result["dhns_split_per_epoch"]
    # generation ran inside the counted steps (refresh every 4: steps 4 and 8 regenerate)
    assert split["generate"] > 0 and split["score_generated"] > 0
    assert sum(split.values()) == pytest.approx(result["seconds_per_epoch"]["dhns"], abs=0.003)
    per_step = result["seconds_per_step"]
    assert result["dhns_vs_uniform"] == pytest.approx(per_step["dhns"] / per_step["uniform"],
                                                      rel=0.01)
    with pytest.raises(ValueError, match="warms up"):
        overhead.measure_overhead(load_model, ntat, kg.train, params, rounds=1, steps=4)


def test_arm_override_reads_values_as_yaml() -> None:
    from bench.arm import override

    params: dict = {"retrain": {"epochs": 3}}
    override(params, "retrain.mined=score")
    override(params, "retrain.lr=0.0002")
    override(params, "model.levels=[0.1, 0.3]")
    assert params == {"retrain": {"epochs": 3, "mined": "score", "lr": 0.0002},
                      "model": {"levels": [0.1, 0.3]}}
    with pytest.raises(SystemExit):
        override(params, "no-equals-sign")


def test_arms_table_pairs_by_seed(tmp_path: Path) -> None:
    from bench.summary import arms_table, load_arms

    def write(arm: str, seed: int, valid: float, test: float, spe: float) -> None:
        result = {"dataset": "X", "arm": arm, "seed": seed, "valid": {"mrr": valid},
                  "valid_held_out": {"mrr": valid - 0.1 * seed},
                  "test": {"mrr": test}, "training": {"seconds_per_epoch": spe}}
        (tmp_path / f"X-{arm}-seed{seed}.json").write_text(json.dumps(result))

    write("uniform", 0, 0.30, 0.31, 2.0)
    write("uniform", 1, 0.32, 0.33, 2.0)
    write("mined", 0, 0.31, 0.33, 3.0)
    write("mined", 1, 0.33, 0.34, 3.0)
    write("mined", 2, 0.50, 0.50, 3.0)  # no uniform seed 2: not paired
    text = arms_table(load_arms(tmp_path))
    row = next(line for line in text.splitlines() if "| mined |" in line)
    assert "0,1,2" in row and "+0.0100 ± 0.0000 | +0.0100 ± 0.0000 |" in row  # valid, held out
    assert "+0.0150 ± 0.0071 (+0.0200, +0.0100)" in row and "1.50x" in row


def test_samplers_table_pairs_with_uniform_by_seed(tmp_path: Path) -> None:
    from bench.summary import samplers_table

    def row(test: float, held: float, spe: float) -> dict:
        return {"test_mrr": test, "test_hits@1": test, "test_hits@3": test,
                "test_hits@10": test, "valid_mrr": test, "valid_held_out_mrr": held,
                "seconds_per_epoch": spe}

    for seed, shift in ((0, 0.0), (1, 0.1)):  # the held-out subsets differ by seed
        table = {"dataset": "X", "seed": seed, "rows": {
            "uniform": row(0.30 + seed / 100, 0.2 + shift, 2.0),
            "sans": row(0.29 + seed / 100, 0.19 + shift, 10.0)}}
        (tmp_path / f"X-samplers-seed{seed}.json").write_text(json.dumps(table))
    text = samplers_table(tmp_path)
    sans = next(line for line in text.splitlines() if "| sans |" in line)
    assert "| 0,1 |" in sans and "-0.0100 ± 0.0000 | -0.0100 ± 0.0000 |" in sans
    assert "10.0 (5.00x)" in sans


def test_scale_random_graph_and_one_cell(tmp_path: Path) -> None:
    from bench import scale

    triples = scale.random_graph(500, 10.0, seed=0)
    assert triples.shape[1] == 3 and 4000 < len(triples) <= 5000
    assert len(torch.unique(triples, dim=0)) == len(triples)  # distinct
    assert int(triples[:, [0, 2]].max()) < 500 and int(triples[:, 1].max()) < scale.RELATIONS
    out = tmp_path / "scale.json"
    scale.main(["--sizes", "500", "--modes", "sparse", "--steps", "2",
                "--queries", "4", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["entities"] == 500 and row["mode"] == "sparse"
    assert row["train_triples_per_s"] > 0 and row["rank_queries_per_s"] > 0
    assert 0 < row["peak_rss_gib"] < 8


def test_gpu_bench_runs_on_the_cpu_and_checks_ranks(tmp_path: Path) -> None:
    from bench import gpu
    from dhns.config import SyntheticConfig
    from dhns.data import generate_synthetic

    data = tmp_path / "synthetic"
    generate_synthetic(SyntheticConfig(num_entities=80, num_types=2, num_relations=3,
                                       triples_per_relation=60, image_size=8), data)
    out = tmp_path / "gpu.json"
    gpu.main(["--dataset-dir", str(data), "--device", "cpu", "--cpu-check", "10",
              "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["cpu_rank_check"] == {"triples": 10, "tail_ranks_equal": 10,
                                        "max_rank_difference": 0}
    assert result["epoch_seconds"] > 0 and result["rank_triples_per_s"] > 0
    assert 0 < result["test_mrr_after_two_epochs"] <= 1


def test_samplers_writes_its_arms_where_its_table_reads_them(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # With --results elsewhere (another machine's rows), each bench.arm run must land in that
    # folder's arms/, not in the repository's results/arms, or the table cannot find it.
    from bench import samplers

    base = tmp_path / "base"
    base.mkdir()
    (base / "params.yaml").write_text("data: {name: MKG-Y}\n")
    calls = []

    def fake_run(command: list[str], **_: object) -> None:
        calls.append(command)
        out = Path(command[command.index("--out") + 1])
        name = command[command.index("--name") + 1]
        out.mkdir(parents=True, exist_ok=True)
        (out / f"MKG-Y-{name}-seed1.json").write_text(json.dumps({
            "command": "python -m bench.arm ...", "valid": {"mrr": 0.3}, "best_epoch": 5,
            "test": {"mrr": 0.31, "hits@1": 0.2, "hits@3": 0.3, "hits@10": 0.4},
            "training": {"seconds_per_epoch": 2.0}}))

    monkeypatch.setattr(samplers.subprocess, "run", fake_run)
    results = tmp_path / "results-epyc"
    monkeypatch.setattr(sys, "argv", ["bench.samplers", "--base", str(base), "--seed", "1",
                                      "--only", "uniform,dhns-ntat", "--results", str(results)])
    samplers.main()
    assert [c[c.index("--out") + 1] for c in calls] == [str(results / "arms")] * 2
    assert calls[1][-2:] == ["--stage", "retrain"]  # the DHNS row is the retrain stage
    table = json.loads((results / "MKG-Y-samplers-seed1.json").read_text())
    assert sorted(table["rows"]) == ["dhns-ntat", "uniform"]
    assert table["rows"]["uniform"]["test_mrr"] == 0.31
