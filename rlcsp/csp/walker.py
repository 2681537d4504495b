"""The walker's state and what one search step leaves behind: its step record and the search's result."""
from __future__ import annotations

from dataclasses import dataclass, field

from ase import Atoms

from rlcsp.csp.genome import Genome

OUTCOMES = ("accepted", "metropolis", "rejected", "failed")  # of search steps; initial structures are "initial"


@dataclass
class StepRecord:
    """One relaxation of the run: an initial structure (kind 'I') or a basin-hopping step ('S')."""

    relaxation: int
    kind: str
    move: int | None
    attempts: int
    outcome: str
    e_new: float | None
    e_current: float
    e_global: float
    temperature: float
    unique: bool
    n_atoms: int
    build_s: float
    relax_s: float
    policy_s: float
    failure: str = ""


@dataclass
class Walker:
    """Everything the loop needs to continue: the current and best structures, counters and temperature."""

    genome: Genome
    atoms: Atoms
    energy: float
    best_genome: Genome
    best_atoms: Atoms
    best_energy: float
    temperature: float
    relaxations: int = 0
    steps_since_downhill: int = 0  # FUSE's `ca`
    steps_since_best: int = 0  # FUSE's `r`
    gm_relaxation: int | None = None
    last_move: int | None = None


@dataclass
class SearchResult:
    walker: Walker
    records: list[StepRecord]
    stop_reason: str
    wall_s: float
    acceptance: dict[str, int] = field(default_factory=dict)
