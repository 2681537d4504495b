"""Table 1 metrics on hand-computed cases.

ElMD positions on the modified Pettifor scale (ElMD's mod_petti.json): Na 10, Li 11, Fe 70, O 96, Br 99, Cl 100.
"""
from __future__ import annotations

import math

import pytest

from rlcsp.design.composition_metrics import (composition_metrics, mean_pairwise_elmd, percent_charge_neutral,
                                       percent_electronegativity_balanced, percent_unique, property_distribution,
                                       table1_markdown)
from rlcsp.exceptions import CompositionError, UnknownElement


def test_percent_unique_counts_reduced_compositions():
    assert percent_unique(["Fe2O3", "Fe4O6", "NaCl", "NaCl"]) == pytest.approx(50.0)
    assert percent_unique(["Fe2O3", "FeO", "Fe3O4"]) == pytest.approx(100.0)


def test_oracle_percentages():
    assert percent_charge_neutral(["NaCl", "NaCl2", "Fe2O3", "NaSe"]) == pytest.approx(75.0)
    assert percent_electronegativity_balanced(["NaCl", "NaCl2", "Fe2O3", "NaSe"]) == pytest.approx(50.0)


def test_elmd_of_identical_compositions_is_zero():
    assert mean_pairwise_elmd(["Fe2O3", "Fe2O3"]) == 0.0
    assert mean_pairwise_elmd(["Fe2O3", "Fe4O6"]) == 0.0


def test_elmd_hand_computed():
    # NaCl -> LiBr: half the mass moves Na -> Li (1 step), half Cl -> Br (1 step): 0.5 + 0.5.
    assert mean_pairwise_elmd(["NaCl", "LiBr"]) == pytest.approx(1.0)
    # Fe2O3 (0.4 Fe, 0.6 O) -> FeO (0.5, 0.5): 0.1 of the mass moves O -> Fe, 26 steps.
    assert mean_pairwise_elmd(["Fe2O3", "FeO"]) == pytest.approx(2.6)
    # Three pairs: (NaCl, NaCl) 0, and twice (NaCl, LiBr) 1.
    assert mean_pairwise_elmd(["NaCl", "NaCl", "LiBr"]) == pytest.approx(2 / 3)
    assert math.isnan(mean_pairwise_elmd(["NaCl"]))


def test_property_distribution():
    stats = property_distribution([1.0, 2.0, 3.0, 2.4], target=2.0, window=0.5)
    assert stats["mean"] == pytest.approx(2.1)
    assert stats["std"] == pytest.approx(math.sqrt((1.1 ** 2 + 0.1 ** 2 + 0.9 ** 2 + 0.3 ** 2) / 4))
    assert stats["percent_within"] == pytest.approx(50.0)


def test_table_layout():
    row = composition_metrics(["NaCl", "Fe2O3"], [2.0, 3.0], target=3.0)
    assert row["N"] == 2 and row["% charge neutral"] == 100.0 and row["% within target"] == 50.0
    table = table1_markdown({"random": row}, target=3.0).splitlines()
    assert table[0].startswith("| agent | N | % charge neutral | % electronegativity balanced | % unique |")
    assert table[2].startswith("| random | 2 | 100.0 | 100.0 | 100.0 |")


def test_bad_input():
    with pytest.raises(CompositionError):
        percent_unique([])
    with pytest.raises(CompositionError):
        property_distribution([], target=1.0)
    with pytest.raises(UnknownElement):
        percent_charge_neutral(["Xx2O"])
