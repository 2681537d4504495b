"""Run settings and the per-compound input scripts that declare them.

An input script is a Python file with a ``CONFIG`` dict (composition, library, limits, target). It runs as
``python inputs/y2o3.py`` and as ``rlcsp run inputs/y2o3.py``; command-line options override the dict.
Everything is validated before the first relaxation, so bad input never costs compute.
"""
from __future__ import annotations

import runpy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlcsp.csp import quirks
from rlcsp.inputs import resolve
from rlcsp.composition import Composition
from rlcsp.exceptions import CompositionError, ConfigError
from rlcsp.csp.genome import OFFSET_STYLES


# What the store keeps of a walker's relaxed structures: every new one, or only its new bests (a campaign whose
# walkers resume without their structures, FUSE's energy uniqueness, and travel as small files: bench/store_size.py).
KEEP_STRUCTURES = ("new", "best")


@dataclass
class SearchConfig:
    """Everything that defines a search. Defaults are the FUSE paper's (fuse.md section 3.1)."""

    composition: dict[str, list[int]]
    max_atoms: int
    name: str = ""
    imax_atoms: int | None = None
    budget: int = 2000  # relaxations, counting the initial population (as FUSE does)
    initial_population: int = 100
    target_energy: float | None = None  # eV/atom; the run stops when reached
    target_tolerance: float = 1e-5
    calculator: str = "lammps-buckingham"
    calculator_options: dict[str, Any] = field(default_factory=dict)
    library: str | None = "lib2.lib"  # GULP library for Buckingham engines, relative to inputs/
    policy: str = "original"
    policy_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    temperature: float = 0.02  # T0, eV/atom
    melt_threshold: int = 500
    melt_step: float = 0.01
    rmax: int | None = None
    max_failed_attempts: int = 500
    max_build_attempts: int = 200_000
    rattle: float = 0.05
    energy_tolerance: float = 1e-4  # eV/atom window in which structures are compared for uniqueness
    density_cutoff: float = 0.4
    dist_cutoff: float = 1.2
    btol: float = 0.25
    vac_ratio: float = 4
    fuse: str | None = None  # FUSE profile: "1.04", "1.06" or "rl" (rlcsp.csp.quirks.PROFILES); None: rlcsp's own
    quirks: list[str] = field(default_factory=list)  # FUSE behaviours switched on besides the profile's
    without: list[str] = field(default_factory=list)  # the profile's quirks switched off, for ablations
    offset_styles: list[str] = field(default_factory=lambda: ["cartesian"])  # gamma = 120 offset genes drawn
    reference: str | None = None  # CIF of the known GM (relative to inputs/ or a path), to say whether it was found
    reference_name: str | None = None  # what a chemist calls it, e.g. "cubic perovskite"
    db: str | None = None  # database URL; the password comes from RLCSP_DB_PASSWORD or ~/.my.cnf, never from here
    keep_structures: str = "new"  # "new": every new relaxed structure is stored; "best": only the walker's new bests

    def __post_init__(self) -> None:
        self.imax_atoms = self.imax_atoms or self.max_atoms
        self.fuse = None if self.fuse is None else str(self.fuse)
        self.quirks = sorted(quirks.quirk_set(self.quirks))  # raises UnknownName
        self.without = sorted(quirks.quirk_set(self.without))
        self.quirk_set = quirks.resolve(self.fuse, self.quirks, self.without)
        self.offset_styles = list(self.offset_styles)
        if not self.offset_styles or set(self.offset_styles) - set(OFFSET_STYLES):
            raise ConfigError(f"offset_styles must be a non-empty list of {', '.join(OFFSET_STYLES)}")
        self.comp = Composition(self.composition)  # raises CompositionError on non-neutral/unknown ions
        self.name = self.name or self.comp.label
        if self.max_atoms < self.comp.atoms_per_fu:
            raise CompositionError(
                f"max_atoms={self.max_atoms} is smaller than one formula unit of {self.comp.label} "
                f"({self.comp.atoms_per_fu} atoms)"
            )
        if self.initial_population < 1:
            raise ConfigError("initial_population must be at least 1")
        if self.budget <= self.initial_population:
            raise ConfigError(
                f"budget={self.budget} relaxations leaves no search steps after the initial population of "
                f"{self.initial_population}; the budget counts the initial population (as FUSE does), and a --budget "
                "at or below a script's initial population halves that population unless --initial-population is given"
            )
        if self.reference is not None and not Path(self.reference_path).is_file():
            raise ConfigError(f"reference structure {self.reference!r} not found (a path, or a file in rlcsp.inputs)")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive")
        if self.keep_structures not in KEEP_STRUCTURES:
            raise ConfigError(f"keep_structures must be one of {', '.join(KEEP_STRUCTURES)}, "
                              f"got {self.keep_structures!r}")
        if self.keep_structures == "best" and "energy_uniqueness" not in self.quirk_set:
            raise ConfigError("keep_structures='best' needs FUSE's energy uniqueness (a --fuse profile, or the quirk "
                              "energy_uniqueness): rlcsp's structural uniqueness resumes from every stored structure")
        if self.db is not None:
            from urllib.parse import urlparse

            if urlparse(self.db).password:
                raise ConfigError("a database password must not be written in an input script; set "
                                  "RLCSP_DB_PASSWORD or put it in ~/.my.cnf")

    @property
    def library_path(self) -> str | None:
        if self.library is None:
            return None
        return str(resolve(self.library))

    @property
    def reference_path(self) -> str | None:
        return None if self.reference is None else str(resolve(self.reference))

    def to_dict(self) -> dict[str, Any]:
        """The settings that name this search in a store (a run is found by them); the default of a setting added
        since runs were first stored is left out, so that those runs are still found."""
        data = asdict(self)
        if data["keep_structures"] == "new":
            del data["keep_structures"]
        return data

    @property
    def label(self) -> str:
        """The mode in words: rlcsp's default, or the FUSE profile and quirks changed from it."""
        changes = [f"+{q}" for q in self.quirks] + [f"-{q}" for q in self.without]
        return " ".join([f"FUSE {self.fuse}" if self.fuse else "default", *changes])


def script_dict(path: str | Path, name: str = "CONFIG", example: str = "inputs/y2o3.py") -> dict[str, Any]:
    """The dict ``name`` of an input script, executed without running its ``__main__`` block."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"input script {str(path)!r} not found")
    namespace = runpy.run_path(str(path), run_name="rlcsp_input")
    if not isinstance(namespace.get(name), dict):
        raise ConfigError(f"{path} defines no {name} dict (see {example} for the layout)")
    return dict(namespace[name])


def load_script(path: str | Path) -> dict[str, Any]:
    """The ``CONFIG`` dict of a search input script."""
    return script_dict(path)


def make_config(base: dict[str, Any], **overrides: Any) -> SearchConfig:
    """Build a validated config from a script's dict plus command-line overrides that are not None."""
    data = dict(base)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "budget" in given and "initial_population" not in given:
        # A short --budget on a paper script (initial population 100) keeps half of it for search steps.
        default = data.get("initial_population", SearchConfig.initial_population)
        if default >= given["budget"]:
            given["initial_population"] = max(1, given["budget"] // 2)
    data.update(given)
    known = {f.name for f in fields(SearchConfig)}
    unknown = sorted(set(data) - known)
    if "fuse_compatible" in unknown or "metropolis" in unknown:
        raise ConfigError("fuse_compatible and metropolis were retired: use fuse='1.04', '1.06' or 'rl' (a FUSE "
                          "profile) and quirks=[...] / without=[...] with names from rlcsp.csp.quirks, e.g. "
                          "quirks=['metropolis_global']")
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return SearchConfig(**data)
