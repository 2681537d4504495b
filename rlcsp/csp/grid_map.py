"""Map a relaxed structure back onto FUSE's grid: the genome a search would have to build to reach it.

A relaxed cell keeps the basis of the grid cell it came from (relaxation strains the cell, it does not re-choose
the lattice vectors), so a reference structure's cell says which instructions could have produced it. ``fit``
tries every layer-translation code and origin shift of those instructions and puts each atom on the nearest free
grid site, cations first. Used to ask whether a known minimum (FUSE's reference GMs) is reachable at all in a
given mode, and to seed tests with genomes that relax into it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from ase import Atoms

from rlcsp.csp.genome import (LAYER_OFFSETS, OFFSET_STYLES, TRICLINIC_ANGLES, VACANCY, Genome, Instructions, block_grid,
                          site_positions, submodule_cell)

SHIFTS_PER_AXIS = 4  # origin shifts tried: a 4x4x4 grid of fractions of the cell


@dataclass(frozen=True)
class GridFit:
    """A genome whose assembled grid best matches the structure, and how far the atoms had to move."""

    genome: Genome
    rms: float  # A, root-mean-square distance from each atom to the grid site it was given


def translation_codes(nc: int, gamma: float) -> Iterator[tuple[int, ...]]:
    """Every layer-offset sequence that keeps FUSE's stacking rule (fuse.md 1.3), FUSE's own draws first.

    Alternating for γ = 90; for γ = 120 no two neighbouring layers (cyclically) share a code. FUSE draws only
    sequences that start with 0; layer swaps (moves 2 and 4) make the others.
    """
    if nc == 1:
        yield (0,)
    elif gamma == 90.0:
        yield tuple(x % 2 for x in range(nc))
        yield tuple((x + 1) % 2 for x in range(nc))
    else:
        for codes in sorted(itertools.product((0, 1, 2), repeat=nc), key=lambda c: c[0]):
            if all(codes[k] != codes[k - 1] for k in range(nc)):
                yield codes


def fit(atoms: Atoms, instructions: Instructions, anions: Iterable[int] = (),
        fuse_compatible: bool | Iterable[str] = False) -> GridFit:
    """The best genome over all translation codes and origin shifts for ``instructions``' cell shape.

    Cations claim their sites before the ``anions`` (atomic numbers) do.

    Positions are compared in fractional coordinates of each cell, so the structure's own strain relative to
    the grid does not count against the fit; the rms is measured in the grid cell.
    """
    if len(atoms) > 4 * instructions.n_sub:
        raise ValueError(f"{len(atoms)} atoms do not fit on {4 * instructions.n_sub} grid sites")
    frac = atoms.get_scaled_positions()
    order = np.argsort(np.isin(atoms.numbers, list(anions)), kind="stable")
    n_sites = 4 * instructions.n_sub
    shifts = np.array(list(itertools.product(np.arange(SHIFTS_PER_AXIS) / SHIFTS_PER_AXIS, repeat=3)))
    best: GridFit | None = None
    for codes in translation_codes(instructions.nc, instructions.angles[2]):
        ins = replace(instructions, translations=codes)
        positions, cell = site_positions(ins, fuse_compatible)
        site_frac = np.linalg.solve(cell.T, positions.reshape(-1, 3).T).T
        string_index = block_grid(Genome(tuple(range(n_sites)), ins)).reshape(-1)
        for shift in shifts:
            string, err = _assign(frac + shift, site_frac, string_index, cell, atoms.numbers, order)
            rms = math.sqrt(err / len(atoms))
            if best is None or rms < best.rms - 1e-9:
                best = GridFit(Genome(tuple(string), ins), rms)
    assert best is not None
    return best


def _assign(frac: np.ndarray, site_frac: np.ndarray, string_index: np.ndarray, cell: np.ndarray,
            numbers: np.ndarray, order: np.ndarray) -> tuple[list[int], float]:
    delta = site_frac[None, :, :] - frac[:, None, :]
    delta -= np.round(delta)
    dist = np.linalg.norm(delta @ cell, axis=2)
    string = [VACANCY] * len(site_frac)
    free = np.ones(len(site_frac), dtype=bool)
    err = 0.0
    for k in order:
        site = int(np.argmin(np.where(free, dist[k], np.inf)))
        free[site] = False
        string[string_index[site]] = int(numbers[k])
        err += dist[k, site] ** 2
    return string, err


def _spans_space(ap: float, angles: tuple[float, float, float]) -> bool:
    """Whether a sub-module of these angles has a volume (some of FUSE's angle sets give none, or no real cell)."""
    with np.errstate(invalid="ignore"):
        volume = abs(np.linalg.det(submodule_cell(ap, angles)))
    return bool(np.isfinite(volume) and volume > 1e-3 * ap ** 3)


def candidate_instructions(atoms: Atoms, ap: float, max_sub: int, strain: float = 0.25,
                           angle_tol: float = 25.0) -> list[Instructions]:
    """Grid cells that ``atoms``' relaxed cell could have come from, nearest first (γ = 120 ones in both styles).

    Each edge must lie within ``strain`` of its grid length (na·ap, nb·ap, nc·ap/2) and each angle within
    ``angle_tol`` degrees of a grid angle (α, β from FUSE's triclinic set or 90; γ 90 or 120, and 120 for odd nc).
    """
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    units = (ap, ap, ap / 2)
    options = [[n for n in range(1, 41) if abs(n * u / length - 1) <= strain] for length, u in zip(lengths, units)]
    side = [[a for a in TRICLINIC_ANGLES if abs(a - angle) <= angle_tol] for angle in angles[:2]]  # 90 included
    gammas = [g for g in LAYER_OFFSETS if abs(g - angles[2]) <= angle_tol]
    found = []
    for na, nb, nc in itertools.product(*options):
        if na * nb * nc > max_sub:
            continue
        for alpha, beta, gamma in itertools.product(side[0], side[1], gammas):
            if gamma == 90.0 and nc % 2 and nc > 1:
                continue  # alternating offsets need an even number of layers
            if not _spans_space(ap, (alpha, beta, gamma)):
                continue  # such as 60/60/120 or 150/150/90: the grid's three axes are coplanar, no cell
            lattice = 5 if (alpha, beta) != (90.0, 90.0) else (3 if gamma == 90.0 else 4)
            first = next(translation_codes(nc, gamma))  # fit() tries the others
            misfit = sum(abs(n * u / length - 1) for n, u, length in zip((na, nb, nc), units, lengths))
            misfit += sum(abs(g - a) / 90.0 for g, a in zip((alpha, beta, gamma), angles))
            for style in (OFFSET_STYLES if gamma == 120.0 else OFFSET_STYLES[:1]):
                found.append((misfit, Instructions(ap, lattice, na, nb, nc, (alpha, beta, gamma), first, style)))
    found.sort(key=lambda item: item[0])
    return [ins for _, ins in found]
