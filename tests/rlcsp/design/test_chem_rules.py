"""SMACT charge neutrality, Pauling electronegativity and CDVAE-style validity on hand-checked formulas.

Oxidation states are SMACT's smact14 table (Na -1/+1, Cl -1/+1..+7, Se -2/+1/+2/+4/+6, Cs -1/+1,
I -1/+1/+3/+4/+5/+7, Cu +1..+4, Zn +1/+2, Fe -2/-1/+1..+6, O -2/-1/+1/+2).
"""
from __future__ import annotations

import pytest
from pymatgen.core import Composition

from rlcsp.design.chem_rules import (charge_neutral, electronegativity_balanced, integer_counts, smact_valid)
from rlcsp.exceptions import CompositionError, UnknownElement


@pytest.mark.parametrize("formula", ["NaCl", "Fe2O3", "Y2Ti2O7", "SrTiO3"])
def test_ionic_compounds_pass_everything(formula):
    assert charge_neutral(formula) and electronegativity_balanced(formula) and smact_valid(formula)


def test_nacl2_cannot_be_balanced():
    # Na is +-1 and 2 Cl need -1 in total, i.e. -1/2 each: no integer state does it.
    assert not charge_neutral("NaCl2")
    assert not electronegativity_balanced("NaCl2")
    assert not smact_valid("NaCl2")


@pytest.mark.parametrize("formula", ["NaSe", "Cs3I"])
def test_neutral_only_with_the_wrong_ion_negative(formula):
    # NaSe balances only as Na(-1) Se(+1), Cs3I only as Cs(-1)3 I(+3): the anion is the less electronegative
    # element (Na 0.93 < Se 2.55, Cs 0.79 < I 2.66), so the Pauling test fails.
    assert charge_neutral(formula)
    assert not electronegativity_balanced(formula)
    assert not smact_valid(formula)


def test_alloy_is_valid_without_being_neutral():
    # Cu and Zn have only positive smact14 states: no neutral assignment, but an all-metal formula is an alloy.
    assert not charge_neutral("CuZn")
    assert smact_valid("CuZn")


def test_single_element_counts_as_valid():
    assert charge_neutral("O2") and electronegativity_balanced("O2") and smact_valid("Na")


def test_noble_gas_compound_is_not_neutral():
    assert not charge_neutral("HeO") and not smact_valid("HeO")


def test_input_forms_agree():
    assert smact_valid(Composition("Fe2O3")) and smact_valid({"Fe": 2, "O": 3}) and smact_valid("Fe4O6")
    assert not smact_valid({"Na": 1, "Cl": 2, "K": 0})  # a zero count is an absent element
    assert integer_counts("Fe4O6") == {"Fe": 4, "O": 6}


@pytest.mark.parametrize("bad", ["Xx2O", {"Qq": 1, "O": 1}, Composition("Xx2O")])
def test_unknown_element_is_a_typed_error(bad):
    with pytest.raises(UnknownElement, match="unknown element"):
        smact_valid(bad)


@pytest.mark.parametrize("bad", [{}, {"Na": 0}, {"Na": 0.5, "Cl": 1}, {"Na": -1}, 42])
def test_bad_compositions_are_typed_errors(bad):
    with pytest.raises(CompositionError):
        charge_neutral(bad)
