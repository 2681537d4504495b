"""A toy offline dataset whose expert policy is learnable: three prototypes whose sites differ in coordination.

Perovskite SrTiO3, fluorite CaF2 and rutile TiO2: every site's element follows from its environment, so a policy
that has learnt the expert fills all 14 sites right.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.spacegroup import crystal

from rlcsp.design.fill_dataset import FillDataset

VOCABULARY = ("O", "F", "Ca", "Ti", "Sr")


def toy_dataset(vocabulary=VOCABULARY) -> FillDataset:
    perovskite = Atoms("SrTiO3", cell=np.eye(3) * 3.905, pbc=True,
                       scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    fluorite = bulk("CaF2", "fluorite", a=5.46)
    rutile = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3053, 0.3053, 0)], spacegroup=136,
                     cellpar=[4.594, 4.594, 2.959, 90, 90, 90])
    return FillDataset.from_crystals([("SrTiO3", perovskite, -1.0, 1.5), ("CaF2", fluorite, -2.0, 6.0),
                                      ("TiO2", rutile, -1.5, 1.8)], vocabulary=vocabulary)
