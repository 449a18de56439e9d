"""Shared fixtures. Keep small: add only what several test files need."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (benchmark files outside the repo); skips the test where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (benchmark data lives outside the repo)")
    return SHARED_DATA
