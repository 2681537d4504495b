"""Shared fixtures: paths to the read-only reference data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlcsp.threads import limit_blas_threads

limit_blas_threads()  # as runs do: threaded BLAS only spins on rlcsp's tiny matrices

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


MYSQL_HOST = os.environ.get("RLCSP_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_USER = os.environ.get("RLCSP_TEST_MYSQL_USER", "rlcsp_test")
os.environ.setdefault("RLCSP_DB_PASSWORD", os.environ.get("RLCSP_TEST_MYSQL_PASSWORD", "rlcsp_test"))


def mysql_url(name: str) -> str:
    return f"mysql://{MYSQL_USER}@{MYSQL_HOST}:3306/{name}"


def drop_mysql_database(name: str) -> None:
    import mysql.connector

    conn = mysql.connector.connect(user=MYSQL_USER, password=os.environ["RLCSP_DB_PASSWORD"], host=MYSQL_HOST)
    conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request, tmp_path):
    """A fresh, empty database on each backend: an SQLite file, and a new schema on the MariaDB server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rlcsp.db'}"
        return
    import uuid

    name = f"rlcsp_test_{uuid.uuid4().hex[:10]}"
    yield mysql_url(name)
    drop_mysql_database(name)
