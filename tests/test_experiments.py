"""``dhns exps``: the experiments view of ``dvc exp show --json`` fits a terminal."""

from __future__ import annotations

import json
from pathlib import Path

from dhns.experiments import experiment_rows, format_rows

# Captured from `dvc exp show --json` (dvc 3.67): one commit, one `-S model.steps=1000` exp.
SHOW = json.loads((Path(__file__).parent / "data" / "exp_show.json").read_text())


def test_rows_hold_changed_params_and_mrrs() -> None:
    rows = experiment_rows(SHOW)
    assert [r["name"].strip() for r in rows] == ["master", "steps1000"]
    assert rows[0]["changed"] == {} and rows[1]["changed"] == {"model.steps": 1000}
    assert rows[1]["dhns"] > rows[1]["uniform"] == 0.2


def test_table_fits_the_width() -> None:
    rows = experiment_rows(SHOW)
    rows[1]["changed"] = {f"retrain.level_weights_{i}": i for i in range(30)}
    text = format_rows(rows, width=100)
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "+0.0100" in text and text.splitlines()[-1].endswith("...")
    assert format_rows([{"name": "x", "changed": {}, "pretrain": None, "uniform": None,
                         "dhns": None}]).splitlines()[-1].split()[1:5] == ["-"] * 4
