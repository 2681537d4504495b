"""GULP's inner cut of the exponential: which starts collapse, and the search failing them without relaxing."""
from __future__ import annotations

import pytest
from ase import Atoms

from rlcsp.calculators.relax import FailureReason
from rlcsp.csp.config import load_script, make_config
from rlcsp.csp.inner_cut import InnerCut
from rlcsp.csp.propose import Proposal, relax_proposals
from rlcsp.csp.search import Search

from ...conftest import ROOT

LIB2 = str(ROOT / "inputs" / "lib2.lib")


def pair(a: str, b: str, r: float) -> Atoms:
    return Atoms(f"{a}{b}", positions=[[0, 0, 0], [r, 0, 0]], cell=[8, 8, 8], pbc=True)


def test_only_opposite_charge_pairs_with_an_exponential_inside_rmin_collapse():
    cut = InnerCut.from_library(LIB2)
    assert cut.describe() == "O-Ti < 1.2 A, O-Sr < 1.2 A, O-Y < 1.2 A"
    assert cut.pair_inside(pair("Y", "O", 1.15)) == "Y-O at 1.150 A"
    assert cut.pair_inside(pair("Sr", "O", 1.199)) == "Sr-O at 1.199 A"
    assert cut.pair_inside(pair("Y", "O", 1.21)) == ""
    assert cut.pair_inside(pair("O", "O", 1.1)) == ""  # like charges repel: no collapse
    assert cut.pair_inside(pair("Y", "Ti", 1.1)) == ""  # no exponential term between cations


class Untouchable:
    def relax(self, structures):
        raise AssertionError("a start inside the inner cut must not reach the relaxer")


def test_the_quirk_fails_a_collapsing_start_without_relaxing_it():
    base = load_script(ROOT / "inputs" / "sry2o4.py")
    search = Search(make_config(base, quirks=["gulp_inner_cut"], rattle=0.0), relaxer=Untouchable())
    atoms = Atoms("SrO", positions=[[0, 0, 0], [1.18, 0, 0]], cell=[6, 6, 6], pbc=True)
    start, screened = search.screen(atoms)
    proposal = Proposal("I", search.random_structure()[0], start, 1, 0.0, screened=screened)
    [(result, relax_s)] = relax_proposals(search.relaxer, [proposal])
    assert result is screened and relax_s == 0.0
    assert not result.ok and result.failure is FailureReason.EXPLODED and "Sr-O at 1.180 A" in result.message
    assert search.quirk_uses == {"gulp_inner_cut": 1}
    assert search.effective_settings()["inner_cut"] == "O-Sr < 1.2 A, O-Y < 1.2 A"
    assert Search(make_config(base), relaxer=Untouchable()).inner_cut is None


def test_the_quirk_needs_a_library():
    from rlcsp.exceptions import ConfigError

    base = load_script(ROOT / "inputs" / "sry2o4.py")
    with pytest.raises(ConfigError, match="needs a Buckingham library"):
        Search(make_config({**base, "library": None}, quirks=["gulp_inner_cut"], calculator="chgnet"),
               relaxer=object())
