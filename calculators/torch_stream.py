"""The batched torch relaxer's in-flight batch as a :class:`RelaxStream`: lockstep walkers submit and poll."""
from __future__ import annotations

import time
from collections import deque
from typing import Any

from ase import Atoms

from rlcsp.calculators.relax import FailureReason, RelaxResult, RelaxStream, failed
from rlcsp.calculators.torch_flight import Flight
from rlcsp.calculators.torch_relax import RELEASE_EVERY, TorchRelaxer
from rlcsp.exceptions import InvalidStructure, LibraryError


class TorchStream(RelaxStream):
    """The relaxer's in-flight batch as a stream: a structure submitted while others relax waits in the queue
    and joins at the next refill (every ``swap_every`` steps); ``poll`` steps the batch until a refill hands
    structures back. Only the refill schedule is shared, and each structure's variables, history and pair list
    are its own, so a structure relaxes the same whenever it joins, up to rounding: its energies and forces are
    bitwise those it has alone, but its path can differ in the last bits with the batch around it (final energies
    within 1e-7 eV/atom on Y2Ti2O7 candidates). So the same walkers with the same seeds repeat exactly, and a
    walker alone agrees with itself in a batch to that level (tests/rlcsp/csp/test_lockstep.py).
    """

    def __init__(self, relaxer: TorchRelaxer):
        super().__init__(relaxer)
        self._structures: dict[int, Atoms] = {}
        self._keys: dict[int, Any] = {}
        self._waiting: deque[int] = deque()
        self._ready: dict[int, RelaxResult] = {}
        self._flight: Flight | None = None
        self._step = 0
        self._next = 0

    def submit(self, key: Any, atoms: Atoms) -> None:
        k = self._next
        self._next += 1
        self._structures[k], self._keys[k] = atoms, key
        try:
            self.relaxer.model.batch([atoms])
            self._waiting.append(k)
        except (InvalidStructure, LibraryError) as err:
            self._ready[k] = failed(atoms, FailureReason.INVALID_STRUCTURE, str(err), time.perf_counter())

    @property
    def pending(self) -> int:
        return len(self._keys)

    @property
    def steps(self) -> int:
        """Steps the batch has taken: with the pending count, a campaign's log tells the step time and batch."""
        return self._step

    @property
    def queued(self) -> int:
        """Structures submitted that have not yet joined the batch."""
        return len(self._waiting)

    def poll(self, timeout: float | None = None) -> list[tuple[Any, RelaxResult, float]]:
        r = self.relaxer
        started = time.perf_counter()
        deadline = None if timeout is None else started + timeout
        while not self._ready and (self._waiting or self._flight is not None):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            if self._flight is None or self._step % r.swap_every == 0:
                t = time.perf_counter()
                self._flight = r._swap(self._flight, self._waiting, self._structures, self._ready, started)
                r._tick("swap_s", t)
                if self._ready or self._flight is None:
                    continue
            r._step(self._flight, self._step % r.swap_every == 0, self._step % RELEASE_EVERY == 0)
            self._step += 1
        r.stats["steps"] = self._step
        ready, self._ready = self._ready, {}
        share = (time.perf_counter() - started) / max(len(ready), 1)
        out = []
        for k, result in ready.items():
            result.wall_s = share
            out.append((self._keys.pop(k), result, share))
            del self._structures[k]
        return out
