"""Shared test fixtures. Real third-party logs are read in place from ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REAL_LOGS


@pytest.fixture
def real_logs() -> Path:
    if not REAL_LOGS.is_dir():
        pytest.skip(f"real training logs not found at {REAL_LOGS} (they live in ../shared, outside the repo)")
    return REAL_LOGS
