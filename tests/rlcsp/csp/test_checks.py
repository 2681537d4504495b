"""Pre-relaxation checks (fuse.md §1.7) on hand-made, random and reference structures."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list

from rlcsp.csp.checks import CheckSettings, check_cell, check_structure, image_distances, periodic_pairs
from rlcsp.composition import Composition
from rlcsp.csp.genome import VACANCY, Genome, Instructions, assemble, grid_cell, grid_numbers, random_genome

OX = {"Y": 3, "Ti": 4, "Sr": 2, "O": -2}
Y2O3 = Composition.from_formula("Y2O3", OX)
SRO = Composition({"Sr": [1, 2], "O": [1, -2]})
DEFAULT, COMPAT = CheckSettings(), CheckSettings(fuse_compatible=True)


def reason(atoms, comp=Y2O3, max_atoms=80, settings=DEFAULT) -> str:
    result = check_structure(atoms, comp, max_atoms, settings)
    return "ok" if result is None else result.split(":")[0]


def rocksalt_sro(a: float = 5.16) -> Atoms:
    """SrO in the rock-salt structure: six O at a/2 around each Sr, a plausible structure."""
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Atoms("Sr4O4", scaled_positions=frac + [[p[0] + 0.5, p[1], p[2]] for p in frac], cell=[a] * 3, pbc=True)


@pytest.mark.parametrize("settings", [DEFAULT, COMPAT])
def test_plausible_structure_passes(settings):
    assert reason(rocksalt_sro(), SRO, 8, settings) == "ok"


def test_each_rejection_reason():
    good = rocksalt_sro()
    assert reason(good, SRO, 7) == "too_many_atoms"
    assert reason(good[:-1], Composition({"Sr": [2, 2], "O": [2, -2]}), 8) == "partial_fu"
    stretched = good.copy()
    stretched.set_cell(good.cell * 1.5, scale_atoms=True)
    assert reason(stretched, SRO, 8) == "density"
    squeezed = good.copy()
    squeezed.set_cell(good.cell * 0.6, scale_atoms=True)
    assert reason(squeezed, SRO, 8) == "density"
    close = good.copy()
    close.positions[4] = close.positions[0] + [1.1, 0, 0]
    assert reason(close, SRO, 8) == "distance"
    assert reason(close, SRO, 8, CheckSettings(check_distances=False)) == "ok"
    string = (39, 8, 8, 8, 39, 8, VACANCY, VACANCY)
    genome = Genome(string, Instructions(4.741, 5, 1, 1, 2, (150, 150, 120), (0, 1)))
    assert reason(assemble(genome)) == "nan_cell"


def test_bond_check_counts_anions_within_the_cutoff():
    # Sr with 2 O at 2.58 A along x only, in a dense enough cell: coordination 2 < 5
    atoms = Atoms("SrO", positions=[[0, 0, 0], [2.58, 0, 0]], cell=[5.16, 3.0, 3.0], pbc=True)
    assert reason(atoms, SRO, 8) == "bonds"
    assert reason(atoms, SRO, 8, CheckSettings(check_bonds=False)) == "ok"
    assert reason(atoms, SRO, 8, CheckSettings(btol=1.0)) == "ok"


def test_fuse_compatible_undercounts_in_thin_cells():
    """c = 2.2 A: the true count is 6 (O at x = ±2.3, z = 0, ±2.2); FUSE's 2x2x2 minimum image sees z = ±2.2 once."""
    atoms = Atoms("SrO", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[4.6, 4.6, 2.2], pbc=True)
    i, j, d = neighbor_list("ijd", atoms, SRO.bond_rules[38].cutoff)
    assert ((i == 0) & (j == 1)).sum() == 6
    assert reason(atoms, SRO, 8) == "ok"
    assert reason(atoms, SRO, 8, COMPAT) == "bonds"


def test_fuse_compatible_distance_ignores_exact_overlaps():
    atoms = rocksalt_sro()
    atoms.positions[4] = atoms.positions[0]  # an O exactly on a Sr
    assert reason(atoms, SRO, 8) == "distance"
    assert reason(atoms, SRO, 8, CheckSettings(fuse_compatible=True, check_bonds=False)) == "ok"


@pytest.mark.parametrize("formula, max_atoms", [("Y2O3", 80), ("Y2Ti2O7", 50), ("Y2TiO5", 50), ("Sr4Ti3O10", 50)])
def test_reference_minima_pass(shared_data, formula, max_atoms):
    comp = Composition.from_formula(formula, OX)
    atoms = read(shared_data / "fuse_reference" / formula / "Original" / "lowest_energy_structure_1.cif")
    assert reason(atoms, comp, max_atoms) == "ok"
    assert reason(atoms, comp, max_atoms, COMPAT) == "ok"


def test_spinel_sry2o4_minimum_fails_fuse_bond_check(shared_data):
    """The check applies before relaxation only: the GM's tetrahedral Sr (CN 4 < 6 - 1) is 'wrong' for it."""
    atoms = read(shared_data / "fuse_reference" / "SrY2O4" / "Original" / "lowest_energy_structure_1.cif")
    assert len(atoms) == 14
    comp = Composition.from_formula("SrY2O4", OX)
    assert reason(atoms, comp, 50) == reason(atoms, comp, 50, COMPAT) == "bonds"


@pytest.mark.parametrize("formula, max_atoms, fuse_compatible", [("Y2O3", 80, False), ("Y2O3", 80, True),
                                                                  ("Y2Ti2O7", 50, False), ("Sr4Ti3O10", 50, True)])
def test_random_valid_structures(formula, max_atoms, fuse_compatible):
    """A 'random valid structure' loop finds candidates that keep the composition and are physically sane."""
    comp = Composition.from_formula(formula, OX)
    settings = CheckSettings(fuse_compatible=fuse_compatible)
    rng = np.random.default_rng(2024)
    accepted, attempts, reasons = [], 0, Counter()
    while len(accepted) < 5 and attempts < 3000:
        attempts += 1
        genome = random_genome(comp, max_atoms, rng, fuse_compatible=fuse_compatible)
        atoms = assemble(genome, fuse_compatible)
        why = check_structure(atoms, comp, max_atoms, settings)
        reasons[why.split(":")[0] if why else "ok"] += 1
        if why is None:
            accepted.append(atoms)
    print(f"\n{formula} fuse_compatible={fuse_compatible}: 1 in {attempts / len(accepted):.0f} raw candidates pass; "
          f"{dict(reasons)}")
    assert len(accepted) == 5
    for atoms in accepted:
        assert len(atoms) % comp.atoms_per_fu == 0 and len(atoms) <= max_atoms
        assert Counter(atoms.numbers) == Counter(comp.fu * (len(atoms) // comp.atoms_per_fu))
        assert neighbor_list("d", atoms, 1.2).size == 0
        density = atoms.get_masses().sum() / atoms.get_volume()
        assert 0.4 * comp.ideal_density <= density <= comp.ideal_density


def random_cells(count: int, seed: int = 5) -> list[Atoms]:
    """Assembled random genomes of every lattice type (thin, skewed and triclinic cells), atoms moved off the grid
    and some outside the cell, as the rattle leaves them."""
    rng = np.random.default_rng(seed)
    cells = []
    while len(cells) < count:
        genome = random_genome(Y2O3, 60, rng, fuse_compatible=bool(len(cells) % 2))
        atoms = assemble(genome, fuse_compatible=bool(len(cells) % 2))
        if np.isfinite(atoms.cell.array).all() and abs(atoms.cell.volume) > 1.0:
            atoms.positions += rng.normal(scale=0.6, size=atoms.positions.shape)
            cells.append(atoms)
    return cells


@pytest.mark.parametrize("cutoff", [1.2, 3.1, 5.5])
def test_periodic_pairs_are_ases_neighbour_list(cutoff):
    """The checks' own pair search finds exactly ASE's pairs (an atom's own images included) at ASE's distances."""
    for atoms in random_cells(40):
        ours = periodic_pairs(atoms.positions, atoms.cell.array, cutoff)
        ase_pairs = neighbor_list("ijd", atoms, cutoff)
        assert len(ours[0]) == len(ase_pairs[0])
        key = [np.lexsort((np.round(d, 9), j, i)) for i, j, d in (ours, ase_pairs)]
        for a, b in zip(ours, ase_pairs):
            assert np.allclose(a[key[0]], b[key[1]], rtol=0, atol=1e-9)


def test_image_distances_hold_every_minimum_image_within_the_cutoff():
    """FUSE's coordination count reads minimum-image distances in the 2x2x2 supercell (ASE's get_distances)."""
    for atoms in random_cells(20):
        supercell = atoms.repeat(2)
        d, _ = image_distances(atoms.positions, supercell.positions, supercell.cell.array, 3.0)
        _, minimum = get_distances(atoms.positions, supercell.positions, cell=supercell.cell, pbc=True)
        near = minimum <= 3.0
        assert near.any()
        assert np.allclose(d.min(axis=-1)[near], minimum[near], rtol=0, atol=1e-9)
        assert (d.min(axis=-1)[~near] > 3.0).all()


def test_a_genome_takes_the_cell_checks_unassembled():
    """grid_numbers and grid_cell are bit for bit what assemble gives, so the early cell checks decide alike."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        genome = random_genome(Y2O3, 80, rng)
        atoms = assemble(genome)
        assert np.array_equal(grid_numbers(genome), atoms.numbers)
        assert np.array_equal(grid_cell(genome.instructions), atoms.cell.array, equal_nan=True)
        assert check_cell(grid_numbers(genome), grid_cell(genome.instructions), Y2O3, 80) == \
            check_cell(atoms.numbers, atoms.cell.array, Y2O3, 80)
