"""What every composition-filling trainer (online DQN, offline CQL and BC) writes, in one way.

Checkpoints are written atomically and refused when they were written with other settings; ``metrics.csv`` holds
one row per episode or logged step under stable (CleanRL) names and is cut back to the checkpoint on resume, so
rows after it are replayed rather than doubled; the same numbers go to the store's ``metrics`` table.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import torch

from rlcsp.exceptions import ConfigError


def save_checkpoint(path: Path, **parts) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(parts, tmp)
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint


def load_checkpoint(path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none; ConfigError if its settings differ from ``config``."""
    if not path.exists():
        return None
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")  # trained on a GPU, read anywhere
    if checkpoint["config"] != config:
        raise ConfigError(f"{path} was written with other settings; use another --out folder")
    return checkpoint


class MetricsLog:
    """``metrics.csv`` (and the store's ``metrics`` table when a store and run are given) of one training run.

    ``keep`` is the number of rows the checkpoint covers when resuming: later rows are dropped and replayed.
    """

    def __init__(self, path: Path, fields: Sequence[str], keep: int | None = None, store=None,
                 run_id: int | None = None):
        if keep is not None and path.exists():
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines[:keep + 1]))
        new = not path.exists()
        self.store, self.run_id = store, run_id
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=list(fields))
        if new:
            self.writer.writeheader()

    def row(self, values: dict[str, Any]) -> None:
        self.writer.writerow(values)

    def to_store(self, step: int, values: dict[str, float]) -> None:
        if self.store is not None and self.run_id is not None:
            self.store.log_metrics(self.run_id, step, values)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.csv with numbers parsed (empty cells become None)."""
    def parse(value: str):
        if value == "":
            return None
        try:
            return float(value)
        except ValueError:
            return value

    with open(path, newline="") as handle:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]
