"""Shared fixtures. Keep small: add only what several test files need."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
