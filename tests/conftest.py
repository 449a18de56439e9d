"""Shared fixtures. Keep small: add only what several test files need."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dhns.config import SyntheticConfig
from dhns.data import generate_synthetic, load_dataset
from dhns.data.kg import KnowledgeGraph

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (benchmark files outside the repo); skips the test where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (benchmark data lives outside the repo)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The suite's tensors are tiny: extra intra-op threads only contend (on a loaded 2-core
    machine they made training tests 40x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: The synthetic graph the training tests learn (200 entities, 1,200 triples).
SMALL_TRAINING_GRAPH = SyntheticConfig(num_entities=200, num_types=4, num_relations=6,
                                       triples_per_relation=200, image_size=8)


def synthetic_kg(tmp_path_factory: pytest.TempPathFactory, config: SyntheticConfig,
                 name: str) -> KnowledgeGraph:
    """The synthetic graph of ``config``, generated under a fresh temporary folder ``name``."""
    out = tmp_path_factory.mktemp(name) / "synthetic"
    generate_synthetic(config, out)
    graph, _ = load_dataset(out)
    return graph


@pytest.fixture(scope="session")
def small_kg(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeGraph:
    """:data:`SMALL_TRAINING_GRAPH`, generated once per test session."""
    return synthetic_kg(tmp_path_factory, SMALL_TRAINING_GRAPH, "small_kg")
