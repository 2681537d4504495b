from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from calculators import AseRelaxer, FailureReason, get_calculator, get_relaxer
from calculators.lammps_relax import LammpsRelaxer

from ..conftest import ROOT, TARGETS


def perturbed_bixbyite(seed: int = 0) -> Atoms:
    atoms = read(ROOT / "inputs" / "structures" / "y2o3_bixbyite.cif")
    rng = np.random.default_rng(seed)
    atoms.rattle(0.1, rng=rng)
    strain = np.eye(3) + np.diag([0.03, -0.03, 0.03]) + np.triu(rng.uniform(-0.03, 0.03, (3, 3)), 1)
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    return atoms


@pytest.fixture(scope="module")
def lammps_relaxer() -> LammpsRelaxer:
    return get_relaxer("lammps-buckingham")


def test_lammps_relaxer_returns_to_bixbyite(lammps_relaxer):
    [result] = lammps_relaxer.relax([perturbed_bixbyite()])
    assert result.ok and result.failure is None
    assert result.energy_per_atom == pytest.approx(-27.394620, abs=1e-5)
    assert result.energy_per_atom == pytest.approx(TARGETS["Y2O3"], abs=1e-5)
    assert result.fmax <= lammps_relaxer.fmax and result.steps > 0 and result.wall_s > 0
    assert len(result.atoms) == 40


def test_ase_relaxer_on_buckingham_returns_to_bixbyite():
    relaxer = get_relaxer("lammps-buckingham", relaxer="ase")
    assert isinstance(relaxer, AseRelaxer)
    [result] = relaxer.relax([perturbed_bixbyite(1)])
    assert result.ok
    assert result.energy_per_atom == pytest.approx(-27.394620, abs=1e-5)


def test_relax_keeps_order_and_handles_mixed_batches(lammps_relaxer):
    good = perturbed_bixbyite(2)
    close = good.copy()
    close.positions[1] = close.positions[0] + [0.2, 0.1, 0.0]
    results = lammps_relaxer.relax([good, close, Atoms(cell=[5, 5, 5], pbc=True)])
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].failure is FailureReason.TOO_CLOSE and "closer than 0.5" in results[1].message
    assert results[2].failure is FailureReason.INVALID_STRUCTURE
    assert all(r.energy_per_atom is None for r in results[1:])  # no 1e20 sentinel anywhere


def test_step_cap_gives_not_converged_with_reason():
    relaxer = LammpsRelaxer(max_cycles=1, steps_per_cycle=3)
    [result] = relaxer.relax([perturbed_bixbyite(3)])
    assert not result.converged and result.failure is FailureReason.NOT_CONVERGED
    assert "fmax" in result.message
    assert not result.ok


def test_timeout_is_reported():
    relaxer = AseRelaxer(get_calculator("lammps-buckingham"), timeout_s=0.0)
    [result] = relaxer.relax([perturbed_bixbyite(4)])
    assert result.failure is FailureReason.TIMEOUT and result.energy_per_atom is None


def test_unknown_element_is_an_invalid_structure(lammps_relaxer):
    atoms = Atoms("ZrO2", scaled_positions=[[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]],
                  cell=[5, 5, 5], pbc=True)
    [result] = lammps_relaxer.relax([atoms])
    assert result.failure is FailureReason.INVALID_STRUCTURE and "Zr" in result.message
