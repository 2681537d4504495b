"""Composition, bond table and the derived FUSE numbers (fuse.md §1.5, §1.7, §6.3)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ase.data import covalent_radii

from rlcsp.composition import Composition
from rlcsp.exceptions import CompositionError
from rlcsp.csp.genome import random_genome
from rlcsp.ionic_data import IonData, ion_data, known_ions

OX = {"Y": 3, "Ti": 4, "Sr": 2, "O": -2}
PAPER = [  # formula, ap, ideal density, max_atoms, max_fus, max_sub  (fuse.md §1.5)
    ("Y2O3", 4.7410, 5.4727, 80, 16, 100),
    ("Y2Ti2O7", 4.3213, 4.4300, 50, 4, 55),
    ("Y2TiO5", 4.4612, 4.7654, 50, 6, 60),
    ("SrY2O4", 4.9442, 5.3671, 50, 7, 61),
    ("Sr4Ti3O10", 4.7296, 4.3862, 50, 2, 42),
]


@pytest.mark.parametrize("formula, ap, density, max_atoms, max_fus, max_sub", PAPER)
def test_paper_compositions(formula, ap, density, max_atoms, max_fus, max_sub):
    comp = Composition.from_formula(formula, oxidation=OX)
    assert comp.ap() == ap
    assert round(comp.ideal_density, 4) == density
    assert comp.max_fus(max_atoms) == max_fus
    assert comp.max_sub(max_atoms) == max_sub
    assert comp.label == formula


@pytest.mark.parametrize("symbol, charge, entry", [
    ("O", -2, (2, 8, 1.3820)), ("Y", 3, (6, 9, 0.9885)), ("Ti", 4, (4, 8, 0.5688)), ("Ti", 2, (6, 6, 0.86)),
    ("Ti", 3, (6, 6, 0.67)), ("Sr", 2, (6, 12, 1.2933)), ("Ba", 2, (6, 12, 1.4743)), ("Ca", 2, (5, 12, 1.1550)),
    ("Fe", 3, (4, 8, 0.6090)),
])
def test_bond_table_matches_fuse(symbol, charge, entry):
    assert ion_data(symbol, charge) == IonData(*entry)


def test_bond_rules_of_the_paper_cations():
    table = {38: (3.344, 5, 13), 39: (2.963, 5, 10), 22: (2.439, 3, 9)}  # fuse.md §1.7, cutoffs to 1e-3
    rules = {**Composition.from_formula("SrY2O4", OX).bond_rules, **Composition.from_formula("Y2TiO5", OX).bond_rules}
    assert set(rules) == set(table)
    for z, rule in rules.items():
        assert rule.cutoff == pytest.approx(table[z][0], abs=6e-4)
        assert (rule.cn_min, rule.cn_max) == table[z][1:]


def test_derived_lists_follow_key_order():
    comp = Composition({"Y": [2, 3], "Ti": [2, 4], "O": [7, -2]})
    assert comp == Composition.from_formula("Y2Ti2O7", OX)
    assert comp.fu == [39, 39, 22, 22, 8, 8, 8, 8, 8, 8, 8]
    assert comp.atoms_per_fu == 11
    assert comp.cations == [39, 22] and comp.anions == [8]
    assert comp.charges == {39: 3, 22: 4, 8: -2}
    assert comp.system_type == "ionic"
    assert Composition(json.loads(json.dumps(comp.to_dict()))) == comp


def test_ap_scale_and_rounding():
    comp = Composition.from_formula("Y2O3", OX)
    assert comp.ap(1.1) == round(4.741 * 1.1, 4)


def test_neutral_composition():
    comp = Composition({"Si": [1], "C": [1]})
    assert comp.system_type == "neutral"
    assert comp.cations == [] and comp.anions == [] and comp.bond_rules == {}
    assert comp.ap() == round(4 * (covalent_radii[14] + covalent_radii[6]) / 2, 4)
    assert Composition.from_formula("SiC") == comp


@pytest.mark.parametrize("spec, message", [
    ({"Y": [2, 3], "O": [2, -2]}, "not charge-neutral"),
    ({"Xx": [2, 3], "O": [3, -2]}, "unknown element"),
    ({"Y": [2, 3], "O": [3]}, "every element"),
    ({"Y": [1, 3]}, "not charge-neutral"),
    ({"Y": [0, 3], "O": [0, -2]}, "positive integer"),
])
def test_invalid_compositions(spec, message):
    with pytest.raises(CompositionError, match=message):
        Composition(spec)


def test_unknown_ion_lists_the_known_ones():
    with pytest.raises(CompositionError) as err:
        Composition({"Y": [1, 6], "O": [3, -2]})
    assert "Y6+" in str(err.value) and "Y3+" in str(err.value)
    assert "Y3+" in known_ions() and "O2-" in known_ions()


def test_formula_parsing_errors():
    with pytest.raises(CompositionError, match="parse"):
        Composition.from_formula("Y2(O3)", OX)
    with pytest.raises(CompositionError, match="oxidation state"):
        Composition.from_formula("Y2O3", {"Y": 3})


def test_max_atoms_below_one_formula_unit():
    comp = Composition.from_formula("Sr4Ti3O10", OX)
    with pytest.raises(CompositionError, match="smaller than one formula unit"):
        comp.max_fus(16)
    with pytest.raises(CompositionError, match="smaller than one formula unit"):
        random_genome(comp, 16, np.random.default_rng(0))
