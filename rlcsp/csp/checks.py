"""Pre-relaxation sanity checks on a candidate structure (FUSE's ``error_check_structure``, fuse.md §1.7).

Runs for every candidate, so it is vectorised, and split so that a genome takes the cheap cell checks before it
is assembled. The default mode measures distances and coordination over the true periodic structure (all images,
``periodic_pairs``); FUSE's ``plain_checks`` quirk reproduces its shortcuts: plain distances
in a 2x2x2 supercell, and anion counts under the minimum-image convention of that supercell (which undercounts
in cells thinner than twice the bond cutoff).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_masses
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
    return (check_cell(atoms.numbers, atoms.cell.array, composition, max_atoms, settings)
            or check_geometry(atoms, composition, settings))


def check_cell(numbers: np.ndarray, cell: np.ndarray, composition: Composition, max_atoms: int,
               settings: CheckSettings = CheckSettings()) -> str | None:
    """The checks that need no positions ('nan_cell', 'too_many_atoms', 'partial_fu', 'density'): a genome can
    take them before it is assembled (rlcsp.csp.genome.grid_cell), and most random genomes fail them."""
    if not np.isfinite(cell).all():
        return "nan_cell: the cell angles are impossible"
    n = len(numbers)
    if n > max_atoms:
        return f"too_many_atoms: {n} > {max_atoms}"
    if n == 0 or n % composition.atoms_per_fu:
        return f"partial_fu: {n} atoms is not a whole number of formula units ({composition.atoms_per_fu} atoms)"
    volume = abs(np.linalg.det(cell))
    ideal = composition.ideal_density
    density = atomic_masses[numbers].sum() / volume if volume > 1e-9 else np.inf
    if not settings.density_cutoff * ideal <= density <= ideal:
        return f"density: {density:.4f} amu/A^3 outside [{settings.density_cutoff} x, 1 x] ideal {ideal:.4f}"
    return None


def check_geometry(atoms: Atoms, composition: Composition, settings: CheckSettings = CheckSettings()) -> str | None:
    """The checks on positions ('distance', 'bonds'), for a structure that passed ``check_cell``."""
    plain = "plain_checks" in settings.fuse_compatible
    bonds = settings.check_bonds and composition.system_type == "ionic" and bool(composition.bond_rules)
    pairs = None
    if not plain and (settings.check_distances or bonds):
        reach = max([settings.dist_cutoff + 1e-6] + [r.cutoff for r in composition.bond_rules.values()])
        pairs = periodic_pairs(atoms.positions, atoms.cell.array, reach)
    if settings.check_distances:
        shortest = _shortest_distance(atoms, settings, pairs)
        if shortest <= settings.dist_cutoff:
            return f"distance: {shortest:.3f} A <= {settings.dist_cutoff} A"
    if bonds:
        wrong = _wrong_coordination_fraction(atoms, composition, pairs)
        if wrong > settings.btol:
            return f"bonds: {wrong:.0%} of cations have a coordination outside the allowed range (btol {settings.btol})"
    return None


def periodic_pairs(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """(i, j, d) of every pair closer than ``cutoff`` over all periodic images, an atom's own images included:
    what ``ase.neighborlist.neighbor_list('ijd')`` returns (d as it computes it, up to rounding), 3-7 times as
    fast on the small cells of a search (0.3-0.7 ms against 2.2 ms on random Y2O3 cells at 1.2 and 3 A)."""
    d, itself = image_distances(positions, positions, cell, cutoff)
    itself &= (np.arange(len(positions))[:, None] == np.arange(len(positions)))[:, :, None]
    i, j, k = np.nonzero((d < cutoff) & ~itself)
    return i, j, d[i, j, k]


def image_distances(a: np.ndarray, b: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (len(a), len(b), images) from each point of ``a`` to the periodic images of each of ``b`` that
    might lie within ``cutoff`` (every one that does is there), and which of them is the unshifted image.

    Each pair starts from its nearest image in fractional coordinates and tries every shift within the cutoff's
    reach along each reciprocal direction.
    """
    inverse = np.linalg.inv(cell)
    nearest = -np.round(b @ inverse - (a @ inverse)[:, None, :])  # (i, j, 3): the pair's nearest image
    reach = np.floor(cutoff * np.linalg.norm(inverse, axis=0) + 0.5).astype(int)
    steps = np.stack(np.meshgrid(*(np.arange(-m, m + 1) for m in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    shifts = nearest[:, :, None, :] + steps  # (i, j, k, 3)
    vectors = b[None, :, None, :] - a[:, None, None, :] + shifts @ cell
    return np.sqrt(np.sum(vectors * vectors, axis=-1)), ~shifts.any(axis=-1)


def _shortest_distance(atoms: Atoms, settings: CheckSettings, pairs: tuple[np.ndarray, ...] | None) -> float:
    if pairs is None:  # plain_checks: FUSE's 2x2x2 supercell
        distances = pdist(atoms.repeat(2).positions)
        distances = distances[distances > 0]
    else:
        distances = pairs[2][pairs[2] < settings.dist_cutoff + 1e-6]
    return float(distances.min()) if distances.size else np.inf


def _wrong_coordination_fraction(atoms: Atoms, composition: Composition,
                                 pairs: tuple[np.ndarray, ...] | None) -> float:
    """Fraction of cations whose anion count within their bond cutoff lies outside [CN_min - 1, CN_max + 1]
    (``pairs`` None: FUSE's minimum image in a 2x2x2 supercell)."""
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
    if pairs is None:
        supercell = atoms.repeat(2)  # an anion counts once, at its nearest image in the supercell
        anions = supercell.positions[np.tile(is_anion, 8)]
        reach = cutoff[numbers[cations]]
        d, _ = image_distances(atoms.positions[cations], anions, supercell.cell.array, float(reach.max()))
        counts = (d <= reach[:, None, None]).any(axis=-1).sum(axis=1)
    else:
        i, j, d = pairs
        bonded = is_anion[j] & (d < cutoff.max()) & (d <= cutoff[numbers[i]])
        counts = np.bincount(i[bonded], minlength=len(atoms))[cations]
    z = numbers[cations]
    wrong = (counts < cn_min[z]) | (counts > cn_max[z])
    return float(wrong.mean())
