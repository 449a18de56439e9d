"""Collect one pipeline run's metrics and reports into ``results/<name>.json`` and print its
table rows.

Run from the project folder that ran the pipeline (``dvc repro`` / ``dvc exp run``)::

    python -m bench.collect --name MKG-Y-seed0 --command "dvc exp run ..." --wall 1234
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import torch
import yaml

from bench.summary import stage_record
from dhns.io import atomic_write_json
from dhns.records import METRICS_DIR, REPORTS_DIR

MODELS = ("pretrain", "uniform", "dhns")


def _stage_files(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def collect(root: Path, name: str, command: str, wall: float | None) -> dict:
    """The run's record: ``metrics`` and ``reports`` by stage, as the pipeline wrote them
    (``bench.summary.stage_record`` merges a stage's two)."""
    return {
        "name": name,
        "date": datetime.date.today().isoformat(),
        "command": command,
        "wall_seconds": wall,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "loadavg": os.getloadavg()},
        "params": yaml.safe_load((root / "params.yaml").read_text()),
        "metrics": _stage_files(root / METRICS_DIR),
        "reports": _stage_files(root / REPORTS_DIR),
    }


def table_rows(result: dict) -> list[str]:
    evaluation = stage_record(result, "evaluate")
    rows = []
    for model in MODELS:
        m = evaluation[model]
        rows.append(f"| {result['name']} | {model} | {m['mrr']:.4f} | {m['hits@1']:.4f} | "
                    f"{m['hits@3']:.4f} | {m['hits@10']:.4f} | {m['optimistic']['mrr']:.4f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--wall", type=float, default=None, help="wall seconds of the run")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    result = collect(args.root, args.name, args.command, args.wall)
    atomic_write_json(args.out / f"{args.name}.json", result)
    print("\n".join(table_rows(result)))


if __name__ == "__main__":
    main()
