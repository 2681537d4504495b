"""One relaxation interface for every engine: ``Relaxer.relax(list[Atoms]) -> list[RelaxResult]``.

A list goes in so that many walkers can later share one batched (GPU) relaxation without changing the
search loop. A failed relaxation is a result with ``converged=False`` and a typed reason, never an
exception escaping into the search and never a 1e20 sentinel in the energies.
"""
from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from ase import Atoms


class FailureReason(str, Enum):
    """Why a relaxation did not give a usable minimum."""

    NOT_CONVERGED = "not_converged"  # step cap reached before the force/stress thresholds
    TOO_CLOSE = "atoms_too_close"  # atoms closer than the engine can handle, refused up front
    INVALID_STRUCTURE = "invalid_structure"  # empty, NaN, singular cell, unknown element
    ENGINE_ERROR = "engine_error"  # the engine crashed or returned NaN
    TIMEOUT = "timeout"  # wall-clock limit reached
    EXPLODED = "exploded"  # energy ran away (Coulomb catastrophe) or the cell collapsed/blew up


@dataclass
class RelaxResult:
    """The outcome of one relaxation. ``energy_per_atom`` is None when no usable energy exists."""

    atoms: Atoms
    energy_per_atom: float | None
    converged: bool
    steps: int
    wall_s: float
    failure: FailureReason | None = None
    message: str = ""
    fmax: float | None = None
    max_stress: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Converged with a finite energy: the only results a search may accept."""
        return self.converged and self.energy_per_atom is not None and np.isfinite(self.energy_per_atom)


def failed(atoms: Atoms, reason: FailureReason, message: str, started: float, steps: int = 0) -> RelaxResult:
    return RelaxResult(atoms=atoms.copy(), energy_per_atom=None, converged=False, steps=steps,
                       wall_s=time.perf_counter() - started, failure=reason, message=message)


def min_distance(atoms: Atoms) -> float:
    """Shortest interatomic distance under periodic boundary conditions (inf for one isolated atom)."""
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 2.0, self_interaction=False)
    if len(d):
        return float(d.min())
    if len(atoms) == 1 and all(atoms.pbc):
        return float(np.linalg.norm(atoms.cell, axis=1).min())
    return float("inf")


class Relaxer(ABC):
    """Relaxes structures to a local minimum of an energy model, at constant (zero) pressure by default."""

    name: str = "relaxer"

    @abstractmethod
    def relax_one(self, atoms: Atoms) -> RelaxResult:
        """Relax one structure; must not raise for physics failures, only return a failed result."""

    def relax(self, structures: list[Atoms]) -> list[RelaxResult]:
        return [self.relax_one(atoms) for atoms in structures]

    def stream(self) -> RelaxStream:
        """Structures submitted one by one, results handed back as they finish (see RelaxStream)."""
        return RelaxStream(self)

    def close(self) -> None:
        """Release engine resources (LAMMPS instances, subprocesses)."""


class RelaxStream:
    """Relaxations that enter and leave one at a time, so that a caller never waits for the slowest of a group.

    ``submit`` queues a structure under a key; ``poll`` works until at least one queued structure has finished
    (or, given a ``timeout``, about that many seconds have passed) and returns ``(key, result, seconds)`` for every
    one that has, where seconds is its share of the poll's wall time. This base stream relaxes everything
    submitted since the last poll with one ``relax`` call, the round a batch relaxer would make anyway; a batched
    relaxer streams for real (TorchRelaxer's in-flight refill), so a structure submitted while others relax joins
    them at the next refill.
    """

    def __init__(self, relaxer: Relaxer):
        self.relaxer = relaxer
        self._queue: list[tuple[Any, Atoms]] = []

    def submit(self, key: Any, atoms: Atoms) -> None:
        self._queue.append((key, atoms))

    @property
    def pending(self) -> int:
        """Structures submitted and not yet handed back."""
        return len(self._queue)

    def poll(self, timeout: float | None = None) -> list[tuple[Any, RelaxResult, float]]:
        """The round's results: its ``relax`` call is one piece, so ``timeout`` does not cut it short."""
        if not self._queue:
            return []
        keys, structures = zip(*self._queue)
        self._queue = []
        started = time.perf_counter()
        results = self.relaxer.relax(list(structures))
        share = (time.perf_counter() - started) / len(results)
        return [(key, result, share) for key, result in zip(keys, results)]


OPTIMIZERS = {"FIRE": "ase.optimize.FIRE", "BFGS": "ase.optimize.BFGS", "LBFGS": "ase.optimize.LBFGS",
              "BFGSLineSearch": "ase.optimize.BFGSLineSearch", "MDMin": "ase.optimize.MDMin"}


@dataclass(frozen=True)
class Stage:
    """One optimisation stage: FUSE ran a rough conjugate-gradient stage, then a tight L-BFGS one."""

    optimizer: str | type = "FIRE"
    fmax: float = 0.05
    steps: int = 500


DEFAULT_STAGES = (Stage("FIRE", fmax=0.1, steps=400), Stage("BFGS", fmax=0.005, steps=1000))


class _Timeout(Exception):
    pass


def _optimizer_class(optimizer: str | type):
    if not isinstance(optimizer, str):
        return optimizer
    from importlib import import_module

    from rlcsp.exceptions import UnknownName

    if optimizer not in OPTIMIZERS:
        raise UnknownName("optimizer", optimizer, list(OPTIMIZERS))
    module, cls = OPTIMIZERS[optimizer].rsplit(".", 1)
    return getattr(import_module(module), cls)


class AseRelaxer(Relaxer):
    """Any ASE calculator, relaxed with ASE optimisers on a FrechetCellFilter (cell and positions)."""

    name = "ase"

    def __init__(self, calculator, stages: tuple[Stage, ...] | list[Stage] = DEFAULT_STAGES,
                 relax_cell: bool = True, timeout_s: float = 600.0, min_distance: float = 0.5,
                 max_energy_drop: float = 50.0):
        self.calculator = calculator
        self.stages = tuple(stages)
        for stage in self.stages:
            _optimizer_class(stage.optimizer)
        self.relax_cell = relax_cell
        self.timeout_s = timeout_s
        self.min_distance = min_distance
        self.max_energy_drop = max_energy_drop

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        from ase.filters import FrechetCellFilter

        from rlcsp.exceptions import InvalidStructure, LibraryError

        started = time.perf_counter()
        work = atoms.copy()
        try:
            if len(work) and min_distance(work) < self.min_distance:
                return failed(work, FailureReason.TOO_CLOSE,
                              f"atoms closer than {self.min_distance} A; refusing to relax", started)
            self.calculator.reset()  # no state carried over from earlier structures
            work.calc = self.calculator
            e0 = work.get_potential_energy() / len(work)
        except (InvalidStructure, LibraryError) as err:
            return failed(work, FailureReason.INVALID_STRUCTURE, str(err), started)
        except Exception as err:  # any third-party calculator may crash; that is a failed relaxation
            return failed(work, FailureReason.ENGINE_ERROR, f"{type(err).__name__}: {err}", started)

        steps = 0
        target = FrechetCellFilter(work) if self.relax_cell else work

        def guard():
            if time.perf_counter() - started > self.timeout_s:
                raise _Timeout
            e = work.get_potential_energy() / len(work)
            if not np.isfinite(e) or e < e0 - self.max_energy_drop:
                raise FloatingPointError(f"energy ran away to {e:.3f} eV/atom")

        converged = False
        try:
            for stage in self.stages:
                opt = _optimizer_class(stage.optimizer)(target, logfile=None)
                opt.attach(guard, interval=10)
                try:
                    with warnings.catch_warnings():
                        # FrechetCellFilter's matrix logarithm warns about ~1e-13 inaccuracies on many steps.
                        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
                        converged = bool(opt.run(fmax=stage.fmax, steps=stage.steps))
                finally:
                    steps += opt.nsteps  # also for a stage cut short by the guard
            energy = work.get_potential_energy() / len(work)
            fmax = float(np.abs(work.get_forces()).max()) if len(work) else 0.0
            stress = float(np.abs(work.get_stress()).max()) if self.relax_cell else None
        except _Timeout:
            return failed(work, FailureReason.TIMEOUT, f"relaxation exceeded {self.timeout_s} s", started, steps)
        except FloatingPointError as err:
            return failed(work, FailureReason.EXPLODED, str(err), started, steps)
        except Exception as err:  # any third-party calculator may crash; that is a failed relaxation
            return failed(work, FailureReason.ENGINE_ERROR, f"{type(err).__name__}: {err}", started, steps)
        result = work.copy()
        return RelaxResult(
            atoms=result, energy_per_atom=float(energy), converged=converged, steps=steps,
            wall_s=time.perf_counter() - started,
            failure=None if converged else FailureReason.NOT_CONVERGED,
            message="" if converged else f"not converged after {steps} steps (fmax {fmax:.3g} eV/A)",
            fmax=fmax, max_stress=stress,
        )
