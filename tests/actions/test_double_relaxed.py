from __future__ import annotations

import numpy as np
import pytest

from rlcsp.actions import get_move
from rlcsp.actions.base import MoveContext
from rlcsp.calculators import get_calculator, get_relaxer
from rlcsp.csp.checks import check_structure
from rlcsp.composition import Composition
from rlcsp.csp.genome import assemble, random_genome

SRY2O4 = Composition({"Sr": [1, 2], "Y": [2, 3], "O": [4, -2]})


def small_genome(seed: int):
    rng = np.random.default_rng(seed)
    while True:
        genome = random_genome(SRY2O4, 28, rng)
        if genome.n_atoms <= 14 and check_structure(assemble(genome), SRY2O4, 28) is None:
            return genome, rng


def tiled_displacements(single, doubled, displacement):
    """Give each atom of the doubled cell the displacement of its image in the single cell."""
    frac = np.linalg.solve(single.cell.T, doubled.positions.T).T
    ref = single.get_scaled_positions(wrap=True)
    out = np.empty_like(doubled.positions)
    for k, f in enumerate(frac):
        delta = (f[None, :] - ref + 0.5) % 1.0 - 0.5
        match = np.argmin(np.linalg.norm(delta @ single.cell.array, axis=1))
        assert np.linalg.norm(delta[match] @ single.cell.array) < 1e-6
        assert doubled.numbers[k] == single.numbers[match]
        out[k] = displacement[match]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_move_5_is_an_exact_supercell_before_and_after_relaxation(seed):
    """Default move 5 doubles the structure exactly: equal energy per atom unrelaxed, and at the relaxed minimum.

    Relaxing the unrelaxed doubled grid directly is not a test of the move: those grids sit far from any minimum
    and the minimiser's path (which depends on the cell's representation) can pick another basin.
    """
    calc = get_calculator("lammps-buckingham")
    relaxer = get_relaxer("lammps-buckingham")

    def per_atom(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy() / len(atoms)

    for draw in range(10 * seed, 10 * seed + 10):  # random cells may collapse; take the first that relaxes
        genome, rng = small_genome(draw)
        doubled = get_move(5).apply(genome, MoveContext(SRY2O4, 28), rng)
        single_atoms, doubled_atoms = assemble(genome), assemble(doubled)
        assert len(doubled_atoms) == 2 * len(single_atoms)
        assert per_atom(doubled_atoms) == pytest.approx(per_atom(single_atoms), abs=1e-7)
        displacement = rng.normal(scale=0.05, size=single_atoms.positions.shape)
        rattled_double = doubled_atoms.copy()
        rattled_double.positions += tiled_displacements(single_atoms, doubled_atoms, displacement)
        rattled_single = single_atoms.copy()
        rattled_single.positions += displacement
        assert per_atom(rattled_double) == pytest.approx(per_atom(rattled_single), abs=1e-7)
        [single] = relaxer.relax([rattled_single])
        if single.ok:
            break
    else:
        pytest.fail("none of 10 random genomes relaxed")
    relaxed = single.atoms
    old, new = genome.instructions, doubled.instructions
    repeat = [b // a for a, b in zip((old.na, old.nb, old.nc), (new.na, new.nb, new.nc))]
    assert sorted(repeat) == [1, 1, 2]
    [double] = relaxer.relax([relaxed.repeat(repeat)])
    assert double.ok
    assert double.energy_per_atom == pytest.approx(single.energy_per_atom, abs=1e-5)
