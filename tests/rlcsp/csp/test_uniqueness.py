"""The uniqueness index decides as pymatgen's StructureMatcher does, reducing each structure at most once."""
from __future__ import annotations

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.io.ase import AseAtomsAdaptor

from rlcsp.csp.uniqueness import UniquenessIndex

from ...calculators.test_buckingham import gm


def test_duplicates_are_the_matchers_and_only_window_members_are_reduced():
    pyrochlore = gm("Y2Ti2O7")
    rotated = pyrochlore.copy()  # the same crystal in another setting: a supercell, shifted and rotated
    rotated = rotated.repeat((2, 1, 1))
    rotated.translate([0.7, 0.2, 0.1])
    rotated.rotate(30, "z", rotate_cell=True)
    rotated.wrap()
    other = pyrochlore.copy()  # the same composition, another structure
    other.positions[:4] += np.array([0.9, -0.6, 0.4])
    index = UniquenessIndex(energy_tolerance=1e-4)
    assert index.add(pyrochlore, -35.15)
    assert index._reduced_flags == [False]  # alone in its window: never reduced
    assert not index.add(rotated, -35.15 + 5e-5)
    assert index._reduced_flags == [True]
    assert index.add(other, -35.15 - 5e-5)  # in the window, but a different structure
    assert index.add(pyrochlore, -34.0)  # the same structure outside the window counts as new, as FUSE counts
    assert len(index) == 3
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, attempt_supercell=True,
                               scale=True)
    as_pmg = AseAtomsAdaptor.get_structure
    assert matcher.fit(as_pmg(pyrochlore), as_pmg(rotated))
    assert not matcher.fit(as_pmg(pyrochlore), as_pmg(other))
