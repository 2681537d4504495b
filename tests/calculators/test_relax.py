from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from rlcsp.calculators import AseRelaxer, FailureReason, get_calculator, get_relaxer
from rlcsp.calculators.lammps_relax import LammpsRelaxer

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


# A rattled SrY2O4 candidate from a search (policy original, seed 0) whose cell collapses under box/relax: the
# Buckingham energy ran to -1e60 eV and each LAMMPS force call then took minutes, past every timeout.
COLLAPSING = Atoms(
    "YSrO2YO2",
    cell=[[4.9442, 0.0, 0.0], [-7.416299999999998, 12.845408404173066, 0.0],
          [-2.140901400695511, 0.1912176004636746, 1.2211696981881404]],
    positions=[[-1.1483781359121166, 0.061400540121658194, 0.6300892551102496],
               [-3.543413013123321, 4.387673872936578, 0.6175589884845485],
               [-2.405230272867963, 6.534041688287577, 0.635144084901546],
               [-4.8448243124875825, 6.522479161678381, 0.6255295362445494],
               [-5.998724215234872, 8.658100919937974, 0.6773141951826479],
               [-4.821403216070228, 10.874919908465303, 0.6142336717096547],
               [-7.297859292367867, 10.80409026452977, 0.6552732243957136]],
    pbc=True)


def test_collapsing_cell_fails_fast_as_exploded(lammps_relaxer):
    [result] = lammps_relaxer.relax([COLLAPSING])
    assert result.failure is FailureReason.EXPLODED and result.energy_per_atom is None
    assert result.wall_s < 10.0


def test_unknown_element_is_an_invalid_structure(lammps_relaxer):
    atoms = Atoms("ZrO2", scaled_positions=[[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]],
                  cell=[5, 5, 5], pbc=True)
    [result] = lammps_relaxer.relax([atoms])
    assert result.failure is FailureReason.INVALID_STRUCTURE and "Zr" in result.message
