"""Mapping a relaxed structure back onto a grid genome (rlcsp.csp.grid_map), on FUSE's own Y2Ti2O7 GMs."""
from __future__ import annotations

import numpy as np
import pytest
from ase.io import read

from rlcsp.calculators.lammps_relax import LammpsRelaxer
from rlcsp.csp.checks import check_structure
from rlcsp.composition import Composition
from rlcsp.csp.genome import Genome, assemble, random_genome
from rlcsp.csp.grid_map import candidate_instructions, fit, translation_codes
from tests.conftest import FUSE_REFERENCE, ROOT, TARGETS

Y2TI2O7 = Composition({"Y": [2, 3], "Ti": [2, 4], "O": [7, -2]})
GM = TARGETS["Y2Ti2O7"]


@pytest.fixture(scope="module")
def relaxer():
    relaxer = LammpsRelaxer(ROOT / "inputs" / "lib2.lib")
    yield relaxer
    relaxer.close()


def test_an_assembled_genome_is_fitted_back_exactly():
    genome = random_genome(Y2TI2O7, 50, np.random.default_rng(4))
    found = fit(assemble(genome), genome.instructions, Y2TI2O7.anions)
    assert found.rms < 1e-6
    assert assemble(found.genome).get_chemical_formula() == assemble(genome).get_chemical_formula()


def test_translation_codes_keep_fuse_stacking_rules():
    assert list(translation_codes(4, 90.0)) == [(0, 1, 0, 1), (1, 0, 1, 0)]
    abc = list(translation_codes(3, 120.0))
    assert abc[0][0] == 0 and len(abc) == 6
    assert all(c[k] != c[k - 1] for c in translation_codes(5, 120.0) for k in range(5))


@pytest.mark.parametrize("run, cell, angles, offsets", [
    (2, (2, 2, 3), (60.0, 90.0, 120.0), "lattice"),     # 22-atom primitive pyrochlore, triclinic grid
    (16, (2, 3, 3), (90.0, 90.0, 120.0), "cartesian"),   # 44 atoms, monoclinic grid, FUSE's offsets
])
def test_fuse_gm_is_a_genome_that_passes_the_checks_and_relaxes_to_the_gm(relaxer, run, cell, angles, offsets):
    atoms = read(FUSE_REFERENCE / "Y2Ti2O7" / "Uniform" / f"lowest_energy_structure_{run}.cif")
    candidates = candidate_instructions(atoms, Y2TI2O7.ap(), Y2TI2O7.max_sub(50))
    ins = next(c for c in candidates if ((c.na, c.nb, c.nc), c.angles, c.offsets) == (cell, angles, offsets))
    genome: Genome = fit(atoms, ins, Y2TI2O7.anions).genome
    grid = assemble(genome)
    assert check_structure(grid, Y2TI2O7, 50) is None
    assert grid.get_chemical_formula() == atoms.get_chemical_formula()
    grid.positions += np.random.default_rng(0).normal(scale=0.05, size=grid.positions.shape)
    result = relaxer.relax_one(grid)
    assert result.ok and result.energy_per_atom == pytest.approx(GM, abs=2e-5)


def test_candidate_cells_of_a_bixbyite_gm_all_have_a_volume():
    # FUSE's 40-atom Y2O3 GM (9.6 Å, 70.5/70.5/109.5°) lies near the angle set 60/60/120, whose sub-module is flat
    atoms = read(FUSE_REFERENCE / "Y2O3" / "Original" / "lowest_energy_structure_2.cif")
    y2o3 = Composition({"Y": [2, 3], "O": [3, -2]})
    cells = candidate_instructions(atoms, y2o3.ap(), y2o3.max_sub(80))
    assert cells and (60.0, 60.0, 120.0) not in {ins.angles for ins in cells}
    for ins in cells:
        assert fit(atoms, ins, y2o3.anions).rms < 2.0  # each fits without a singular cell
