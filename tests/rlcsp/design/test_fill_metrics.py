"""Metrics of generated fillings on cases computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rlcsp.design.fill_env import PAPER_A_VOCABULARY
from rlcsp.design.fill_metrics import (CATEGORIES, category_similarity, dft_success_rate, element_category, emd,
                                       novelty, ood_design_rate, reduced_formula, site_accuracy, validity,
                                       window_rate)

GENERATED = [["Sr", "Ti", "O", "O", "O"], ["Ca", "O"]]
TRUE = [["Ba", "Ti", "O", "O", "N"], ["Ca", "Cl"]]


def test_site_accuracy_and_category_similarity():
    assert site_accuracy(GENERATED, TRUE) == pytest.approx(4 / 7)  # Ti, O, O, Ca
    # Sr/Ba both alkaline earth, O/N both nonmetal; O for Cl (halogen) is the one wrong class
    assert category_similarity(GENERATED, TRUE) == pytest.approx(6 / 7)
    assert site_accuracy(TRUE, TRUE) == category_similarity(TRUE, TRUE) == 1.0
    with pytest.raises(ValueError, match="same skeletons"):
        site_accuracy(GENERATED, TRUE[:1])
    assert math.isnan(site_accuracy([], []))


def test_paper_a_classes_cover_its_88_elements_once():
    members = [el for elements in CATEGORIES.values() for el in elements]
    assert len(CATEGORIES) == 9 and len(members) == 88 and set(members) == set(PAPER_A_VOCABULARY)
    assert element_category("Ba") == element_category("Sr") == "alkaline earth metal"
    assert element_category("Ar") == "other"


def test_validity_and_novelty():
    fillings = [["Na", "Cl"], ["Na", "Cl", "Cl", "Cl"], ["Fe", "Fe"], ["Cu", "Zn"], ["Sr", "Ti", "O", "O", "O"]]
    assert validity(fillings) == pytest.approx(4 / 5)  # NaCl3 balances no SMACT oxidation states
    training = {"NaCl", "SrTiO3"}
    generated = [["Na", "Cl", "Na", "Cl"], ["O", "Ti", "Sr", "O", "O"], ["Ba", "Ti", "O", "O", "O"]]
    assert reduced_formula(generated[0]) == "NaCl"
    assert novelty(generated, training) == pytest.approx(1 / 3)  # Na2Cl2 is NaCl; BaTiO3 is new


def test_emd_window_and_out_of_distribution_design():
    assert emd([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert emd([0.0, 0.0], [1.0, 3.0]) == pytest.approx(2.0)  # mean of |0-1| and |0-3|
    assert emd([0.0, math.nan, 0.0], [1.0, 3.0]) == pytest.approx(2.0)  # a failed calculation is dropped
    gaps = [1.0, 1.36, 0.85, 1.5, math.nan]
    assert window_rate(gaps, 1.12) == pytest.approx(2 / 5)  # 1.0 and 1.36 are within 0.25 eV
    assert window_rate(gaps, 1.12, half_width=0.4) == pytest.approx(4 / 5)
    assert ood_design_rate(gaps, [True, False, True, True, True], 1.12) == pytest.approx(1 / 5)
    assert ood_design_rate(np.array([1.1]), np.array([True]), 1.12) == 1.0


def test_dft_success_rate():
    assert dft_success_rate(["ok", "scf_not_converged", "ok", "wrong_charge"]) == 0.5
    assert math.isnan(dft_success_rate([]))
