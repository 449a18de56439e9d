"""A stage's record split into ``metrics/`` (what runs are compared on) and ``reports/``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dhns.records import merge_records, read_record, split_record
from stages.common import METRIC_KEYS, write_record

ROOT = Path(__file__).resolve().parents[1]
#: Names of timing, resource and cost figures: they belong in the reports, never the metrics.
TIMING = re.compile(r"seconds|resources|peak_rss|_per_s$|epoch_time|device")

EVALUATION = {
    "pretrain": {"mrr": 0.1, "mr": 20.0, "hits@1": 0.05, "hits@3": 0.1, "hits@10": 0.4,
                 "count": 480, "optimistic": {"mrr": 0.11, "mr": 19.0},
                 "by_side": {"head": {"mrr": 0.09}, "tail": {"mrr": 0.11}},
                 "checkpoint_epoch": 45},
    "dhns": {"mrr": 0.2, "hits@1": 0.1, "hits@3": 0.2, "hits@10": 0.5,
             "optimistic": {"mrr": 0.21}, "by_category": {}},
}


def _leaves(tree: object, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    return [k for key, value in tree.items()
            for k in _leaves(value, f"{prefix}.{key}" if prefix else key)]


def test_split_keeps_the_named_figures_and_merging_gives_the_record_back() -> None:
    metrics, report = split_record(EVALUATION, METRIC_KEYS["evaluate"])
    assert metrics == {m: {"mrr": r["mrr"], "hits@1": r["hits@1"], "hits@3": r["hits@3"],
                           "hits@10": r["hits@10"], "optimistic": {"mrr": r["optimistic"]["mrr"]}}
                       for m, r in EVALUATION.items()}
    assert report["pretrain"]["optimistic"] == {"mr": 19.0}
    assert report["dhns"] == {"by_category": {}}  # an empty mapping is kept, in the report
    assert not set(_leaves(metrics)) & set(_leaves(report))
    assert merge_records(metrics, report) == EVALUATION


def test_a_path_to_a_mapping_keeps_all_of_it_and_absent_keys_are_skipped() -> None:
    record = {"heldout_loss_ratio": {"text:tail": 0.7, "text:head": 0.69}, "seconds": 3.0,
              "generated_rank": {"t=3": {"median_rank": 83.0, "mean_rank": 74.4}},
              "level_steps": [3, 5]}
    metrics, report = split_record(record, METRIC_KEYS["diffusion"])
    assert metrics == {"heldout_loss_ratio": record["heldout_loss_ratio"],
                       "generated_rank": {"t=3": {"median_rank": 83.0}}}
    assert report == {"seconds": 3.0, "generated_rank": {"t=3": {"mean_rank": 74.4}},
                      "level_steps": [3, 5]}


def test_merge_copies_and_later_parts_win() -> None:
    first = {"a": {"b": 1}, "c": 1}
    merged = merge_records(first, {"a": {"d": 2}, "c": 2})
    assert merged == {"a": {"b": 1, "d": 2}, "c": 2}
    merged["a"]["b"] = 9
    assert first == {"a": {"b": 1}, "c": 1}


@pytest.mark.parametrize("stage", sorted(METRIC_KEYS))
def test_no_metric_key_names_a_timing(stage: str) -> None:
    assert not [k for k in METRIC_KEYS[stage] if TIMING.search(k)]


def test_write_record_splits_atomically_and_reads_back(tmp_path: Path) -> None:
    record = {"epochs_run": 2, "best_valid_mrr": 0.2, "seconds": 1.5, "seconds_per_epoch": 0.75,
              "stopped_early": False}
    assert write_record("pretrain", record, tmp_path / "metrics", tmp_path / "reports") is record
    assert json.loads((tmp_path / "metrics" / "pretrain.json").read_text()) == {
        "epochs_run": 2, "best_valid_mrr": 0.2}
    assert json.loads((tmp_path / "reports" / "pretrain.json").read_text()) == {
        "seconds": 1.5, "seconds_per_epoch": 0.75, "stopped_early": False}
    assert read_record(tmp_path, "pretrain") == record
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_a_folder_from_before_the_split_reads_the_same(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    old = {"epochs_run": 2, "seconds_per_epoch": 0.75, "resources": {"wall_seconds": 3.0}}
    (tmp_path / "metrics" / "uniform.json").write_text(json.dumps(old))
    assert read_record(tmp_path, "uniform") == old
    assert read_record(tmp_path, "retrain") == {}


@pytest.mark.parametrize("stage", sorted(METRIC_KEYS))
def test_committed_metrics_and_reports_are_split_as_the_stages_write_them(stage: str) -> None:
    metrics = json.loads((ROOT / "metrics" / f"{stage}.json").read_text())
    report = json.loads((ROOT / "reports" / f"{stage}.json").read_text())
    assert split_record(merge_records(metrics, report), METRIC_KEYS[stage]) == (metrics, report)
    assert not [k for k in _leaves(metrics) if TIMING.search(k)]
    assert "resources" in report
