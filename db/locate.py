"""One way to name a store or a run everywhere: a URL, a plain SQLite file, or a run's output folder.

A run folder names its run: ``run.json`` (written when the run is created) or ``summary.json`` hold the store URL
and the run id, and the folder's own ``rlcsp.db`` is the store when neither says otherwise.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rlcsp.db.connection import StoreError

OWNER = "run.json"


def folder_run(folder: str | Path) -> tuple[str, int] | None:
    """(store URL, run id) of the run that owns an output folder, or None when no run has written there."""
    folder = Path(folder)
    for name in (OWNER, "summary.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("run_id") is not None and data.get("db"):
                return data["db"], int(data["run_id"])
    return None


def store_url(value: str | Path) -> str:
    """A store URL from a URL, an SQLite file path or a run folder; StoreError says what was expected."""
    text = str(value)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir():
        owner = folder_run(path)
        if owner is not None:
            return owner[0]
        if (path / "rlcsp.db").is_file():
            return f"sqlite:///{(path / 'rlcsp.db').resolve()}"
        raise StoreError(f"{text!r} is a folder without a run (no run.json, summary.json or rlcsp.db)")
    if path.is_file():
        return f"sqlite:///{path.resolve()}"
    raise StoreError(f"no database at {text!r}: give a run folder (runs/demo), an SQLite file (runs/demo/rlcsp.db) "
                     "or a URL (sqlite:///path, mysql://user@host:3306/name)")


def known_stores(root: str | Path = ".") -> list[str]:
    """The stores a user in ``root`` most likely means: RLCSP_DB_URL, ./rlcsp.db, and every runs/**/rlcsp.db."""
    root = Path(root)
    urls = [os.environ["RLCSP_DB_URL"]] if os.environ.get("RLCSP_DB_URL") else []
    files = ([root / "rlcsp.db"] if (root / "rlcsp.db").is_file() else []) + sorted((root / "runs").glob("**/rlcsp.db"))
    return urls + [f"sqlite:///{f.resolve()}" for f in files]


def locate_run(run: str, db: str | None = None) -> tuple[str, int]:
    """(store URL, run id) from what a user typed: a run folder, or a run id with ``--db`` (or a single known store)."""
    if not run.isdigit():
        path = Path(run)
        owner = folder_run(path) if path.is_dir() else None
        if owner is None:
            raise StoreError(f"{run!r} is neither a run id nor a run folder (a folder with run.json or summary.json)")
        return (store_url(db) if db else owner[0]), owner[1]
    if db:
        return store_url(db), int(run)
    stores = known_stores()
    if len(stores) == 1:
        return stores[0], int(run)
    where = "no store here" if not stores else f"{len(stores)} stores here"
    raise StoreError(f"run {run}: {where}; name the run by its folder (rlcsp show runs/demo) or add --db")
