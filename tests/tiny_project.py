"""A tiny prepared pipeline folder, for the tests that run stages in-process.

The stages read and write paths relative to the current directory (``stages/common.py``), so
a test copies the folder and changes into it (``monkeypatch.chdir``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from dhns.config import load_params
from dhns.data import generate_synthetic

TINY_PARAMS = {
    "device": "cpu",
    "data": {"synthetic": {"num_entities": 60, "num_types": 3, "num_relations": 4,
                           "triples_per_relation": 60, "image_size": 8}},
    "kge": {"dim": 8, "num_negatives": 8, "modalities": ["structure"], "compile": False},
    "pretrain": {"epochs": 1, "eval_every": 1, "batch_size": 64, "max_valid": 50},
}


def make_project(root: Path) -> Path:
    """``root`` with params.yaml (:data:`TINY_PARAMS`), data/synthetic and artifacts/prepared."""
    from stages import prepare

    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    with contextlib.chdir(root):
        params = load_params()
        generate_synthetic(params.data.synthetic, Path(params.data.dir) / "synthetic")
        prepare.run(params)
    return root


def write_params(root: Path, section: str, **values: object) -> None:
    """Override ``section.key: value`` pairs in ``root/params.yaml``."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params))
