"""Pre-relaxation sanity checks on a candidate structure (FUSE's ``error_check_structure``, fuse.md §1.7).

Runs for every candidate, so it is vectorised. The default mode measures distances and coordination over the
true periodic structure (ASE neighbour lists); FUSE's ``plain_checks`` quirk reproduces its shortcuts: plain distances
in a 2x2x2 supercell, and anion counts under the minimum-image convention of that supercell (which undercounts
in cells thinner than twice the bond cutoff).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_masses
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list
from scipy.spatial.distance import pdist

from rlcsp.composition import Composition
from rlcsp.csp.quirks import quirk_set


@dataclass(frozen=True)
class CheckSettings:
    """run_fuse's check parameters, with FUSE's defaults (every paper input leaves them unchanged)."""

    density_cutoff: float = 0.4
    dist_cutoff: float = 1.2
    btol: float = 0.25
    check_bonds: bool = True
    check_distances: bool = True
    fuse_compatible: bool | Iterable[str] = False  # held as a frozenset of quirk names; "plain_checks" matters here

    def __post_init__(self) -> None:
        object.__setattr__(self, "fuse_compatible", quirk_set(self.fuse_compatible))  # once, not per candidate


def check_structure(atoms: Atoms, composition: Composition, max_atoms: int,
                    settings: CheckSettings = CheckSettings()) -> str | None:
    """Reason the candidate is rejected, or None if it passes.

    The word before the colon is stable ('nan_cell', 'too_many_atoms', 'partial_fu', 'density', 'distance',
    'bonds'), so callers can tally rejections by kind.
    """
    cell = atoms.cell.array
    if not np.isfinite(cell).all():
        return "nan_cell: the cell angles are impossible"
    n = len(atoms)
    if n > max_atoms:
        return f"too_many_atoms: {n} > {max_atoms}"
    if n == 0 or n % composition.atoms_per_fu:
        return f"partial_fu: {n} atoms is not a whole number of formula units ({composition.atoms_per_fu} atoms)"
    volume = abs(np.linalg.det(cell))
    ideal = composition.ideal_density
    density = atomic_masses[atoms.numbers].sum() / volume if volume > 1e-9 else np.inf
    if not settings.density_cutoff * ideal <= density <= ideal:
        return f"density: {density:.4f} amu/A^3 outside [{settings.density_cutoff} x, 1 x] ideal {ideal:.4f}"
    if settings.check_distances:
        shortest = _shortest_distance(atoms, settings)
        if shortest <= settings.dist_cutoff:
            return f"distance: {shortest:.3f} A <= {settings.dist_cutoff} A"
    if settings.check_bonds and composition.system_type == "ionic":
        wrong = _wrong_coordination_fraction(atoms, composition, "plain_checks" in settings.fuse_compatible)
        if wrong > settings.btol:
            return f"bonds: {wrong:.0%} of cations have a coordination outside the allowed range (btol {settings.btol})"
    return None


def _shortest_distance(atoms: Atoms, settings: CheckSettings) -> float:
    if "plain_checks" in settings.fuse_compatible:
        distances = pdist(atoms.repeat(2).positions)
        distances = distances[distances > 0]
    else:
        distances = neighbor_list("d", atoms, settings.dist_cutoff + 1e-6)
    return float(distances.min()) if distances.size else np.inf


def _wrong_coordination_fraction(atoms: Atoms, composition: Composition, fuse_compatible: bool) -> float:
    """Fraction of cations whose anion count within their bond cutoff lies outside [CN_min - 1, CN_max + 1]."""
    rules = composition.bond_rules
    numbers = atoms.numbers
    cutoff, cn_min, cn_max = (np.zeros(numbers.max() + 1) for _ in range(3))
    for z, rule in rules.items():
        if z < len(cutoff):
            cutoff[z], cn_min[z], cn_max[z] = rule.cutoff, rule.cn_min, rule.cn_max
    is_anion = np.isin(numbers, composition.anions)
    cations = np.flatnonzero(cutoff[numbers] > 0)
    if cations.size == 0:
        return 0.0
    if fuse_compatible:
        supercell = atoms.repeat(2)
        anions = np.flatnonzero(np.tile(is_anion, 8))
        _, d = get_distances(atoms.positions[cations], supercell.positions[anions], cell=supercell.cell, pbc=True)
        counts = (d <= cutoff[numbers[cations]][:, None]).sum(axis=1)
    else:
        i, j, d = neighbor_list("ijd", atoms, float(cutoff.max()))
        bonded = is_anion[j] & (d <= cutoff[numbers[i]])
        counts = np.bincount(i[bonded], minlength=len(atoms))[cations]
    z = numbers[cations]
    wrong = (counts < cn_min[z]) | (counts > cn_max[z])
    return float(wrong.mean())
