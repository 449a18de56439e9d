"""A tiny prepared pipeline folder, for the tests that run stages in-process.

The stages read and write paths relative to the current directory (``stages/common.py``), so
a test copies the folder and changes into it (``monkeypatch.chdir``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import yaml

# dotted: the flattening bench/recipe.py uses too, one copy in the library; the
# pipeline-API and CUDA tests import it from here.
from dhns.config import dotted as dotted
from dhns.config import load_params
from dhns.data import generate_synthetic

ROOT = Path(__file__).resolve().parents[1]
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


def copy_code(dest: Path) -> Path:
    """This checkout's ``dhns/``, ``stages/`` and ``dvc.yaml`` in ``dest``: a project folder
    whose stage commands (``python -m dhns NAME``, run there) run that copy."""
    for name in ("dhns", "stages"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    return dest


def write_params(root: Path, section: str, **values: object) -> None:
    """Override ``section.key: value`` pairs in ``root/params.yaml``."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params))


#: The whole pipeline in seconds: what tests/test_pipeline.py and test_readme_commands.py run.
PIPELINE_TINY = {
    "data": {"synthetic": {"num_entities": 60, "num_types": 3, "num_relations": 4,
                           "triples_per_relation": 60, "image_size": 16}},
    "features": {"image": {"max_per_entity": 1}},
    "kge": {"dim": 8, "num_negatives": 8},
    "pretrain": {"epochs": 3, "eval_every": 1, "batch_size": 64},
    "model": {"epochs": 2, "batch_size": 256, "sampling_steps": 4},
    "retrain": {"epochs": 2, "batch_size": 64, "eval_every": 1},
}


def merge(base: dict, update: dict) -> dict:
    """``base`` updated in place with the nested ``update``; returns ``base``."""
    for key, value in update.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base

