"""Keep a run going while its database is away: steps wait in order in a local buffer and are flushed later.

Each step is first tried against the store with a short outage tolerance. While the store is unreachable,
steps queue up in memory and in ``pending_steps.jsonl`` beside the run's outputs (so even a crash loses nothing);
every later step first flushes the queue, oldest first. Writes are idempotent, so a step whose commit was in
flight when the connection dropped is never stored twice. If the store stays away longer than ``max_outage_s``
the run is asked to stop cleanly; rerunning flushes the saved queue before continuing.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rlcsp.db.connection import StoreUnavailable
from rlcsp.db.store import Store, atoms_from_text, atoms_to_text


class StepBuffer:
    def __init__(self, store: Store, run_id: int, path: Path, max_outage_s: float = 600.0):
        self.store = store
        self.run_id = run_id
        self.path = Path(path)
        self.max_outage_s = max_outage_s
        self.pending: list[dict] = []
        self.down_since: float | None = None
        if self.path.exists():  # left by an earlier outage: flush before anything new
            self.pending = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.flush()

    @property
    def expired(self) -> bool:
        return self.down_since is not None and time.monotonic() - self.down_since > self.max_outage_s

    def record(self, record, state: dict, new: dict | None, **fields) -> None:
        from dataclasses import asdict

        item = {"record": asdict(record), "state": state, "fields": fields,
                "new": None if new is None else {**new, "atoms": atoms_to_text(new["atoms"])}}
        self.pending.append(item)
        if len(self.pending) > 1 or not self.flush():
            with self.path.open("a") as handle:  # durable copy while the store is away
                handle.write(json.dumps(item) + "\n")

    def flush(self) -> bool:
        """Write pending steps in order; False (and keep them) if the store is still away."""
        from rlcsp.csp.walker import StepRecord

        while self.pending:
            item = self.pending[0]
            new = item["new"]
            if new is not None:
                new = {**new, "atoms": atoms_from_text(new["atoms"])}
            tried_at = time.monotonic()
            try:
                self.store.record_step(self.run_id, StepRecord(**item["record"]), item["state"], new,
                                       **item["fields"])
            except StoreUnavailable as err:
                if self.down_since is None:  # the store's own retries already spent part of the outage
                    self.down_since = tried_at
                    print(f"rlcsp: warning: {err}; buffering steps locally in {self.path} until it is back",
                          file=sys.stderr)
                return False
            self.pending.pop(0)
        if self.down_since is not None:
            print(f"rlcsp: database back after {time.monotonic() - self.down_since:.0f} s; buffered steps stored",
                  file=sys.stderr)
            self.down_since = None
        self.path.unlink(missing_ok=True)
        return True
