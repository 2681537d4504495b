"""The design list's stability columns: binary prototypes and the CHGNet hull (real CHGNet weights)."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list

from rlcsp.design.hull import Hull, binaries, prototypes


def test_binaries_follow_common_oxidation_states():
    assert sorted(binaries("Rb", "F")) == ["FRb CsCl", "FRb rocksalt", "FRb zincblende"]
    assert sorted(binaries("Sc", "F")) == ["F3Sc ReO3"]
    assert sorted(binaries("Na", "O")) == ["Na2O antifluorite"]
    assert sorted(binaries("Y", "O")) == ["O3Y2 corundum"]
    assert sorted(binaries("Ti", "O")) == ["O2Ti fluorite", "O2Ti rutile"]


@pytest.mark.parametrize("ratio", [(1, 1), (1, 2), (2, 1), (2, 3), (1, 3), (3, 1)])
def test_prototypes_put_cation_and_anion_at_the_contact_distance(ratio):
    d = 2.3
    for name, atoms in prototypes("Ca", "O", *ratio, d).items():
        counts = [atoms.get_chemical_symbols().count(s) for s in ("Ca", "O")]
        assert counts[0] * ratio[1] == counts[1] * ratio[0], name
        i, j, dist = neighbor_list("ijd", atoms, 4.5)
        pairs = np.array([atoms[a].symbol != atoms[b].symbol for a, b in zip(i, j)])
        assert dist[pairs].min() == pytest.approx(d, rel=0.05), name  # the closest pair: cation-anion, near d
        assert dist[~pairs].min() > d, name


def test_hull_places_rock_salt_on_it_and_a_cscl_polymorph_above():
    hull = Hull()
    rocksalt = hull.evaluate(bulk("NaCl", "rocksalt", a=5.64))
    assert abs(rocksalt.e_above_hull) < 1e-3 and rocksalt.decomposition == "NaCl"
    assert rocksalt.e_form == pytest.approx(-2.13, abs=0.15)  # NaCl's formation enthalpy: -411 kJ/mol
    cscl = hull.evaluate(bulk("NaCl", "cesiumchloride", a=3.4))
    assert cscl.e_above_hull > 0.05 and cscl.e_form > rocksalt.e_form
    relaxations = len(hull._energies)
    hull.evaluate(bulk("NaCl", "rocksalt", a=5.64))
    assert len(hull._energies) == relaxations  # every energy is computed once
