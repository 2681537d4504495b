"""Shared fixtures: paths to the read-only reference data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RLCSP_SHARED", ROOT.parent / "shared")).resolve()
FUSE_REFERENCE = SHARED / "data" / "fuse_reference"
GULP_RUNS = SHARED / "data" / "gulp_runs"
TARGETS = {
    "Y2O3": -27.394619,
    "Y2Ti2O7": -35.153743,
    "Y2TiO5": -32.682202,
    "SrY2O4": -24.428313,
    "Sr4Ti3O10": -29.984896,
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"reference data not found at {SHARED}; set RLCSP_SHARED to the shared/ folder")
    return SHARED / "data"
