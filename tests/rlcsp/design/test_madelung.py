"""Site potentials of point charges against the published Madelung constants and pymatgen's Ewald energy."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from rlcsp.design.madelung import K_E, formal_charges, potential_matrix


@pytest.mark.parametrize("atoms, constant", [(bulk("NaCl", "rocksalt", a=5.64), 1.747565),
                                             (bulk("NaCl", "rocksalt", a=5.64, cubic=True), 1.747565),
                                             (bulk("CsCl", "cesiumchloride", a=4.12), 1.762675)])
def test_site_potentials_give_the_madelung_constants(atoms, constant):
    charges = np.array([1.0 if s in ("Na", "Cs") else -1.0 for s in atoms.get_chemical_symbols()])
    phi = potential_matrix(atoms.cell.array, atoms.positions) @ charges
    nearest = min(atoms.get_distance(0, j, mic=True) for j in range(len(atoms)) if charges[j] < 0)
    assert phi[charges > 0] == pytest.approx(-constant * K_E / nearest, rel=1e-6)
    assert phi[charges < 0] == pytest.approx(constant * K_E / nearest, rel=1e-6)


def test_energy_of_a_distorted_cell_is_pymatgens_ewald_energy():
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = bulk("MgO", "rocksalt", a=4.2, cubic=True)
    atoms.rattle(0.3, seed=1)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.05 * np.random.default_rng(0).normal(size=(3, 3))),
                   scale_atoms=True)
    charges = np.array([2.0 if s == "Mg" else -2.0 for s in atoms.get_chemical_symbols()])
    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.add_oxidation_state_by_site(list(charges))
    # pymatgen converts with e^2/(4 pi eps0) = 14.3996455 eV A, rlcsp with GULP's 14.3997584
    expected = EwaldSummation(structure, acc_factor=20).total_energy * K_E / EwaldSummation.CONV_FACT
    assert 0.5 * charges @ potential_matrix(atoms.cell.array, atoms.positions) @ charges == pytest.approx(
        expected, rel=1e-9)


def test_formal_charges_balance_the_filling_with_common_states_of_each_role():
    assert list(formal_charges(["Rb", "Sc", "Rb", *"FFFFF"], [1, 1, 1, *[-1] * 5])) == [1, 3, 1, *[-1] * 5]
    assert list(formal_charges(["Fe", "Fe", "O", "O", "O"], [1, 1, -1, -1, -1])) == [3, 3, -2, -2, -2]
    assert formal_charges(["Na", "Na", "F"], [1, 1, -1]) is None
