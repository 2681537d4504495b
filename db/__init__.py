"""Storage: SQLite (embedded default) and MySQL/MariaDB (shared), one schema, exact resume."""
from __future__ import annotations

from rlcsp.db.connection import Database, StoreError, StoreUnavailable, default_url, parse_url
from rlcsp.db.locate import folder_run, known_stores, locate_run, store_url
from rlcsp.db.store import Store, atoms_from_text, atoms_to_text

__all__ = ["Database", "Store", "StoreError", "StoreUnavailable", "default_url", "parse_url", "atoms_to_text",
           "atoms_from_text", "folder_run", "known_stores", "locate_run", "store_url"]
