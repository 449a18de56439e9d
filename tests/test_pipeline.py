"""`dvc repro` of the whole pipeline on a tiny synthetic config, in a scratch copy."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_project import PIPELINE_TINY, merge

from dhns.records import read_record
from stages.common import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).parent / "dvc"
#: Names of timing, resource and cost figures: reports/, never metrics/ (dvc exp show).
TIMING = re.compile(r"seconds|resources|peak_rss|_per_s$|epoch_time|device")


def _leaves(tree: object, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every non-mapping in ``tree``, as ``dvc exp show`` flattens."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, value in tree.items()
            for k, v in _leaves(value, f"{prefix}.{key}" if prefix else key).items()}


def _dvc(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(workdir)}
    return subprocess.run([str(DVC), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DVC.exists():
        pytest.skip("dvc is not installed in this environment")
    work = tmp_path_factory.mktemp("pipeline")
    for name in ("dhns", "stages"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PIPELINE_TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([str(DVC), "init", "--no-scm", "-q"], cwd=work, check=True)
    result = _dvc(work, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    return work


def test_metrics_hold_what_runs_are_compared_on_and_reports_the_rest(project: Path) -> None:
    for stage in METRIC_KEYS:
        metrics = _leaves(json.loads((project / "metrics" / f"{stage}.json").read_text()))
        report = _leaves(json.loads((project / "reports" / f"{stage}.json").read_text()))
        assert metrics, stage
        assert not [k for k in metrics if TIMING.search(k)], (stage, metrics)
        assert not [k for k, v in metrics.items() if isinstance(v, list)], stage  # per epoch
        assert not set(metrics) & set(report), stage  # each figure in one file only
        # a tiny stage can finish in under 0.05 s, which rounds to 0.0
        assert report["resources.wall_seconds"] >= 0 and report["resources.peak_rss_mb"] > 50
    for stage in ("pretrain", "uniform", "retrain"):
        report = json.loads((project / "reports" / f"{stage}.json").read_text())
        assert report["seconds_per_epoch"] >= 0 and report["seconds"] >= 0
    retrain = json.loads((project / "reports" / "retrain.json").read_text())
    assert {"generate_seconds_per_epoch", "score_seconds_per_epoch",
            "generated_coverage_per_epoch"} <= set(retrain)
    evaluate = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert set(evaluate) == {"pretrain", "uniform", "dhns"}
    assert set(evaluate["dhns"]) == {"mrr", "hits@1", "hits@3", "hits@10", "optimistic"}
    # What dvc itself shows: no timing column among the metrics.
    shown = _dvc(project, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    columns = [k for files in json.loads(shown.stdout).values()
               for f in files["data"].values() for k in _leaves(f["data"])]
    assert columns and not [k for k in columns if TIMING.search(k)]


def test_repro_writes_metrics_for_every_model(project: Path) -> None:
    metrics = read_record(project, "evaluate")  # metrics/ and reports/ merged
    assert set(metrics) == {"pretrain", "uniform", "dhns", "resources"}
    for result in (metrics[m] for m in ("pretrain", "uniform", "dhns")):
        assert 0 < result["mrr"] <= 1
        assert result["optimistic"]["mrr"] >= result["mrr"]
        assert set(result["by_side"]) == {"head", "tail"}
    diagnostics = read_record(project, "diffusion")
    assert set(diagnostics["mean_score"]) >= {"positive", "uniform"}
    levels = [f"t={t}" for t in diagnostics["level_steps"]]
    assert list(diagnostics["dispersion"]) == levels
    assert all(0 < v < 10 for v in diagnostics["dispersion"].values()), diagnostics
    assert 0 < diagnostics["terminal_alpha_bar"] < 1
    # generated negatives against the real entities, per level
    assert list(diagnostics["generated_rank"]) == levels
    assert list(diagnostics["nearest_known_answer"]) == levels
    for summary in diagnostics["generated_rank"].values():
        assert set(summary) == {"mean_rank", "median_rank", "rank1_fraction"}
        assert 1 <= summary["median_rank"] <= diagnostics["wrong_answers"] + 1
        assert 0 <= summary["rank1_fraction"] <= 1
    assert all(0 <= v <= 1 for v in diagnostics["nearest_known_answer"].values())
    retrain = read_record(project, "retrain")
    parts = {"kgc", "ha_positive", "ha_negative"}
    for when in ("start", "end"):
        gradients = retrain["loss_gradients"][when]
        assert set(gradients["norm"]) == set(gradients["share"]) == parts
        assert abs(sum(gradients["share"].values()) - 1) < 1e-3 and gradients["norm"]["kgc"] > 0
    retrain_params = yaml.safe_load((project / "params.yaml").read_text())["retrain"]
    assert len(retrain["generated_coverage_per_epoch"]) == retrain["epochs_run"]
    expected = retrain_params["generate_fraction"] / retrain_params["refresh_every"]
    assert abs(retrain["generated_coverage"] - expected) < 0.05, retrain
    for name in ("pretrain", "uniform", "retrain"):
        lines = (project / "plots" / f"{name}.csv").read_text().splitlines()
        assert lines[0] == "epoch,loss,valid_mrr" and len(lines) > 1
        # DVCLive's live copy of the same records: one loss row per epoch.
        epochs = len(lines) - 1
        live = json.loads((project / "dvclive" / name / "metrics.json").read_text())
        assert live["step"] == epochs and "best_valid_mrr" in live
        loss_rows = (project / "dvclive" / name / "plots/metrics/loss.tsv").read_text()
        assert len(loss_rows.splitlines()) == epochs + 1
    # The projection figure's points: three queries, each with its answer among the nearest
    # real entities and every level's generated tails.
    with open(project / "plots" / "diffusion_projection.csv", newline="") as handle:
        points = list(csv.DictReader(handle))
    levels = {f"level_{k + 1}" for k in range(len(diagnostics["level_steps"]))}
    for q in ("0", "1", "2"):
        kinds = [p["kind"] for p in points if p["query"] == q]
        assert kinds.count("answer") == 1 and levels <= set(kinds)


def test_every_declared_plot_renders_with_data(project: Path) -> None:
    shown = _dvc(project, "plots", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    plots = json.loads(shown.stdout)
    assert not plots.get("errors"), plots["errors"]
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    top_level = [next(iter(p)) for p in spec["plots"]]
    assert set(top_level) <= set(plots["data"])
    images = [name for name in plots["data"] if name.endswith(".png")]
    assert sorted(images) == [f"plots/figures/{n}.png" for n in ("projection", "scores",
                                                                   "training")]
    for name, renders in plots["data"].items():
        assert renders, f"plot {name!r} rendered nothing"
        if name in images:  # the offline view: PNGs the figures stage drew
            assert renders[0]["type"] == "image"
            data = (project / name).read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
            continue
        values = renders[0]["content"]["data"]["values"]
        assert values, f"plot {name!r} has no data"
    scores = next(p for p in spec["plots"] if "diffusion_scores.csv" in str(p))
    fields = next(iter(scores.values()))["y"]["plots/diffusion_scores.csv"]
    rows = plots["data"][next(iter(scores))][0]["content"]["data"]["values"]
    # One series per declared column (DVC melts them into rows tagged by "field"), each with
    # a value in every row: no level's column is missing or empty.
    assert {row["field"] for row in rows} == set(fields)
    assert all(row["dvc_inferred_y_value"] != "" for row in rows)


def test_second_repro_does_nothing(project: Path) -> None:
    result = _dvc(project, "repro")
    assert result.returncode == 0, result.stderr
    assert "Running stage" not in result.stdout


def test_diffusion_steps_change_reruns_only_later_stages(project: Path) -> None:
    params_file = project / "params.yaml"
    original = params_file.read_text()
    try:
        params = yaml.safe_load(original)
        params["model"]["steps"] = 100
        params_file.write_text(yaml.safe_dump(params))
        result = _dvc(project, "status", "--json")
        assert result.returncode == 0, result.stderr
        # evaluate follows through retrain's output; nothing up to pretrain is touched.
        changed = set(json.loads(result.stdout))
        assert changed == {"diffusion", "retrain"}
    finally:
        params_file.write_text(original)


def test_bad_param_fails_with_one_line(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project)}
    params_file = project / "params.yaml"
    original = params_file.read_text()
    try:
        params_file.write_text(original + "\nbogus_key: 1\n")
        result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=project, env=env,
                                capture_output=True, text=True)
    finally:
        params_file.write_text(original)
    assert result.returncode == 1
    assert "unknown key bogus_key" in result.stderr
    assert "Traceback" not in result.stderr


def _stage(project: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_forced_rerun_of_prepare_leaves_downstream_cached(project: Path) -> None:
    """Outputs are byte-deterministic, so recomputing ``prepare`` gives the same hashes and no
    stage after it is invalidated (it used to rerun all seven)."""
    result = _dvc(project, "repro", "-f", "-s", "prepare")
    assert result.returncode == 0, result.stderr
    status = _dvc(project, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {}


def test_diffusion_stage_is_bit_reproducible(project: Path) -> None:
    """Same seed, one thread: two runs give the sampler's weights bit for bit, and the same
    file bytes (the denoiser is built from a generator derived from ``seed``, not from torch's
    global RNG, and the checkpoint is written deterministically)."""
    import torch

    sampler = project / "artifacts" / "diffusion" / "model.pt"
    # The reruns rewrite the stage's outputs (its wall time differs, and `dvc repro` may have
    # used more threads): put them back after, so the project stays as DVC left it.
    outputs = [sampler, project / "metrics" / "diffusion.json",
               project / "reports" / "diffusion.json",
               *(project / "plots").glob("diffusion*")]
    saved = {path: path.read_bytes() for path in outputs}
    runs = []
    try:
        for _ in range(2):
            done = _stage(project, "diffusion")  # OMP_NUM_THREADS=1
            assert done.returncode == 0, done.stderr
            runs.append((sampler.read_bytes(),
                         torch.load(sampler, weights_only=True)["state_dict"]))
    finally:
        for path, content in saved.items():
            path.write_bytes(content)
    (first_bytes, first), (second_bytes, second) = runs
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert first_bytes == second_bytes  # and so DVC's hash is the same


def _retrain_with(project: Path, retrain: dict, kge: dict | None = None
                  ) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the retrain stage with ``retrain`` (and ``kge``) params updated, then put the
    project's params and retrain outputs back; the stage's result and record."""
    params_file = project / "params.yaml"
    original = params_file.read_text()
    keep = {p: p.read_bytes() for p in (project / "metrics" / "retrain.json",
                                        project / "reports" / "retrain.json",
                                        project / "plots" / "retrain.csv",
                                        project / "artifacts" / "retrain" / "model.pt")}
    try:
        params = yaml.safe_load(original)
        params["retrain"].update(retrain)
        params["kge"].update(kge or {})
        params_file.write_text(yaml.safe_dump(params))
        done = _stage(project, "retrain")
        assert done.returncode == 0, done.stderr
        return done, read_record(project, "retrain")
    finally:
        params_file.write_text(original)
        for path, content in keep.items():
            path.write_bytes(content)


def test_retrain_with_the_random_control(project: Path) -> None:
    # retrain.ha_source random: the stage runs NTAT's term on real entities drawn uniformly.
    done, report = _retrain_with(project, {"ha_source": "random", "positive_term": False,
                                           "margins": False, "lambda_ha": 1.0})
    assert "random real entities (the control)" in done.stderr
    assert report["loss_gradients"]["start"]["share"]["ha_negative"] > 0


def test_retrain_leaving_out_known_answers(project: Path) -> None:
    # retrain.ha_exclude_known: the stage reports which share of its generated negatives it
    # left out of L_HA.
    done, report = _retrain_with(project, {"ha_exclude_known": True, "positive_term": False})
    assert "known answers left out" in done.stderr
    assert 0 <= report["ha_excluded_fraction"] < 1
    assert "of the generated negatives left out" in done.stderr


@pytest.mark.parametrize("sampler, mined, loss", [
    ("uniform", "score", "ns"), ("dhns", "diffusion", "ns"), ("uniform", "generated", "ns"),
    ("dhns", "generated", "shared")])
def test_retrain_with_mined_negatives(project: Path, sampler: str, mined: str, loss: str
                                      ) -> None:
    # loss: the continuation's regime; pretrain was ns.
    retrain = {"negatives": sampler, "mined": mined, "mined_negatives": 3, "mine_every": 1,
               "loss": loss}
    done, report = _retrain_with(project, retrain, {"shared_pool": 16})
    epochs = yaml.safe_load((project / "params.yaml").read_text())["retrain"]["epochs"]
    assert report["mined"] == mined
    assert report["minings"] == epochs  # once per epoch
    assert 0.5 < report["mined_coverage"] <= 1
    assert "mined negatives:" in done.stderr
    assert f"({mined}) in the {loss} loss's softmax" in done.stderr
