"""Where records of pw.x runs are kept, so that a repeated request never runs pw.x twice.

:class:`DftCache` is the protocol that :func:`~rlcsp.calculators.espresso.runner.run_dft` reads and writes
(the project database's store implements it too, shared by every process using the database);
:class:`JsonlDftCache` is a file-backed one for work without a database.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol


class DftCache(Protocol):
    """Where records of pw.x runs go: ``put`` keeps every record, ``get`` returns the newest for a key."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, record: dict) -> None: ...


class JsonlDftCache:
    """A file-backed :class:`DftCache`: one JSON line per record, appended; safe to share between processes.

    Lines appended by other processes are picked up at the next ``get``; a half-written last line is
    left for later.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._index: dict[str, dict] = {}
        self._offset = 0

    def _refresh(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        for line in complete.splitlines():
            if line.strip():
                record = json.loads(line)
                self._index[record["key"]] = record
        self._offset += len(complete)

    def get(self, key: str) -> dict | None:
        self._refresh()
        return self._index.get(key)

    def put(self, key: str, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps({**record, "key": key}) + "\n")
