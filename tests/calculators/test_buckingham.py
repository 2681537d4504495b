from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.io import read

from rlcsp.calculators import get_calculator
from rlcsp.calculators.buckingham import BuckinghamCalculator
from rlcsp.calculators.lammps_session import LammpsBuckingham
from rlcsp.calculators.library import load_library
from rlcsp.calculators.reference_energy import reference_energy
from rlcsp.exceptions import InvalidStructure, LibraryError

from ..conftest import ROOT, TARGETS

GM_FILES = {
    "Y2O3": "y2o3_bixbyite.cif",
    "Y2Ti2O7": "y2ti2o7_gm.cif",
    "Y2TiO5": "y2tio5_gm.cif",
    "SrY2O4": "sry2o4_gm.cif",
    "Sr4Ti3O10": "sr4ti3o10_gm.cif",
}


def gm(composition: str) -> Atoms:
    return read(ROOT / "inputs" / "structures" / GM_FILES[composition])


@pytest.fixture(scope="module")
def calc() -> BuckinghamCalculator:
    return get_calculator("lammps-buckingham")


def energy_per_atom(atoms: Atoms, calc) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy() / len(atoms)


@pytest.mark.parametrize("composition", list(GM_FILES))
def test_gm_energy_matches_published_target(composition, calc):
    assert energy_per_atom(gm(composition), calc) == pytest.approx(TARGETS[composition], abs=2e-6)


def test_real_gulp_run_final_energy(shared_data, calc):
    """GULP 4.3.5 relaxed SrTiO3 (opti conp c6, lib2.lib): Final energy = -158.58354625 eV."""
    text = (shared_data / "gulp_runs" / "fuse_srtio3_opt_dump" / "temp.res").read_text()
    cellpar = [float(x) for x in text.split("cell\n", 1)[1].split("\n", 1)[0].split()]
    block = text.split("fractional", 1)[1].split("totalenergy")[0]
    rows = re.findall(r"^(\w+)\s+core\s+(\S+)\s+(\S+)\s+(\S+)", block, re.M)
    atoms = Atoms([r[0] for r in rows], scaled_positions=[[float(v) for v in r[1:]] for r in rows],
                  cell=cellpar, pbc=True)
    atoms.calc = calc
    assert len(atoms) == 5
    assert atoms.get_potential_energy() == pytest.approx(-158.58354625, abs=1e-5)


def test_agrees_with_independent_sums_on_rattled_triclinic_cells(calc):
    lib = load_library()
    rng = np.random.default_rng(7)
    for composition in ("Y2O3", "SrY2O4", "Sr4Ti3O10"):
        atoms = gm(composition)
        atoms.rattle(0.05, rng=rng)
        atoms.set_cell(atoms.cell @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))), scale_atoms=True)
        ours = energy_per_atom(atoms, calc)
        independent = reference_energy(atoms, lib).total / len(atoms)
        assert ours == pytest.approx(independent, abs=2e-6), composition


def test_c6_cutoff_option_is_higher_by_meV():
    """fuse.md 6.2: truncating C6 at 12 A instead of GULP's lattice sum raises E by 4-7 meV/atom."""
    atoms = gm("Y2O3")
    cut = energy_per_atom(atoms, BuckinghamCalculator(c6="cutoff"))
    assert 0.003 < cut - TARGETS["Y2O3"] < 0.008


@pytest.mark.parametrize("composition", ["SrY2O4", "Y2O3"])
def test_forces_and_stress_match_finite_differences(composition, calc):
    atoms = gm(composition)
    rng = np.random.default_rng(3)
    atoms.rattle(0.08, rng=rng)
    atoms.set_cell(atoms.cell @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))), scale_atoms=True)
    atoms.calc = calc
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    numeric = calculate_numerical_forces(atoms, eps=1e-3)
    assert np.linalg.norm(forces - numeric) / np.linalg.norm(forces) < 1e-4
    numeric_stress = calculate_numerical_stress(atoms, eps=3e-4)
    assert np.linalg.norm(stress - numeric_stress) / np.linalg.norm(stress) < 1e-4


def test_short_range_exclusion_forces_and_stress():
    """Below rmin GULP drops A exp(-r/rho); the correction must stay consistent with its derivatives."""
    atoms = gm("SrY2O4")
    o = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "O"]
    atoms.positions[o[1]] = atoms.positions[o[0]] + [0.7, 0.5, 0.4]  # an O-O pair at 0.95 A < rmin
    calc = BuckinghamCalculator()
    atoms.calc = calc
    with_exclusion = atoms.get_potential_energy()
    assert with_exclusion < calc.session.energy() - 1.0  # the removed repulsion is large at 0.95 A
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    forces = atoms.get_forces()
    assert np.linalg.norm(forces - numeric) / np.linalg.norm(forces) < 1e-4
    numeric_stress = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.linalg.norm(atoms.get_stress() - numeric_stress) / np.linalg.norm(numeric_stress) < 1e-4


def test_any_cell_basis_and_orientation_gives_the_same_physics(calc):
    atoms = gm("SrY2O4")
    atoms.rattle(0.05, rng=np.random.default_rng(1))
    e0, f0 = energy_per_atom(atoms, calc), None
    atoms.calc = calc
    f0 = atoms.get_forces().copy()
    s0 = atoms.get_stress(voigt=False).copy()
    skewed = atoms.copy()
    skewed.set_cell(np.array([[1, 3, 0], [0, 1, 0], [-2, 1, 1]]) @ atoms.cell, scale_atoms=False)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    skewed.set_cell(skewed.cell @ rot.T, scale_atoms=False)
    skewed.positions = atoms.positions @ rot.T
    skewed.calc = calc
    assert skewed.get_potential_energy() / len(skewed) == pytest.approx(e0, abs=1e-7)
    np.testing.assert_allclose(skewed.get_forces(), f0 @ rot.T, atol=1e-5)
    np.testing.assert_allclose(skewed.get_stress(voigt=False), rot @ s0 @ rot.T, atol=1e-7)


def test_one_lammps_instance_per_calculator(calc):
    instance = calc.session._lmp
    energies = [energy_per_atom(gm(c), calc) for c in ("Y2O3", "SrY2O4", "Y2O3")]
    assert calc.session._lmp is instance
    assert energies[0] == energies[2]


@pytest.mark.parametrize(
    "atoms, error, message",
    [
        (Atoms("ZrO2", positions=[[0, 0, 0], [1, 1, 1], [2, 2, 2]], cell=[5, 5, 5], pbc=True), LibraryError,
         "element Zr has no charge"),
        (Atoms("BaO", positions=[[0, 0, 0], [2, 2, 2]], cell=[4, 4, 4], pbc=True), LibraryError,
         "shell-model species"),
        (Atoms(cell=[5, 5, 5], pbc=True), InvalidStructure, "empty structure"),
        (Atoms("YO", positions=[[0, 0, 0], [2, 2, 2]], cell=[[np.nan, 0, 0], [0, 5, 0], [0, 0, 5]], pbc=True),
         InvalidStructure, "NaN"),
        (Atoms("YO", positions=[[0, 0, 0], [2, 2, 2]], cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0]], pbc=True),
         InvalidStructure, "singular cell"),
    ],
)
def test_bad_structures_get_typed_errors(atoms, error, message, calc):
    atoms.calc = calc
    with pytest.raises(error, match=message):
        atoms.get_potential_energy()


@pytest.mark.parametrize("cutoff", [8.0, 12.0])
def test_pair_just_inside_a_power_of_two_cutoff_is_no_energy_hole(cutoff):
    """LAMMPS looks the real-space Coulomb table up by the float32 bits of r^2; at r^2 just under rc^2 = 64 the
    rounded r^2 lands in the next binade, which the table wraps to its start, and the energy drops by thousands of
    eV per atom.
    A minimiser then drives a pair onto the cutoff. Rock-salt SrO with an O-O (and Sr-Sr) distance of rc - 5e-8."""
    session = LammpsBuckingham(load_library(ROOT / "inputs" / "lib2.lib"), cutoff=cutoff, accuracy=1e-6)
    energies = []
    for r in (cutoff - 5e-8, cutoff - 1e-6, cutoff + 1e-6):  # (a/2) sqrt(10) is an fcc lattice-vector length
        session.load(bulk("SrO", "rocksalt", a=r / np.sqrt(2.5)))
        energies.append(session.energy() / 2)
    session.close()
    assert energies[0] == pytest.approx(energies[1], abs=1e-4)
    assert energies[0] == pytest.approx(energies[2], abs=1e-4)
