"""An independent, slow evaluation of GULP's rigid-ion energy, used to check the LAMMPS engine.

Coulomb comes from pymatgen's ``EwaldSummation`` rescaled to GULP's constant; the Buckingham exponential
is a direct sum over rmin <= r <= rmax; the C6 term is a direct sum to ``c6_cutoff`` plus the analytic
mean-field tail. This shares no code with LAMMPS, which is the point (fuse.md Appendix B).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from rlcsp.calculators.library import GULP_COULOMB, Library


@dataclass(frozen=True)
class EnergyTerms:
    coulomb: float
    exponential: float
    c6: float

    @property
    def total(self) -> float:
        return self.coulomb + self.exponential + self.c6


def reference_energy(atoms: Atoms, library: Library, c6_cutoff: float = 30.0) -> EnergyTerms:
    """Total-cell energy terms (eV) by direct sums; slow (seconds), for checks and benches only."""
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.io.ase import AseAtomsAdaptor

    symbols = np.array(atoms.get_chemical_symbols())
    charges = np.array([library.charge(s) for s in symbols])
    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.add_site_property("charge", charges.tolist())
    ewald = EwaldSummation(structure, acc_factor=12.0)
    coulomb = ewald.total_energy * GULP_COULOMB / EwaldSummation.CONV_FACT

    rmax = max(t.rmax for t in library.buckingham)
    i, j, d = neighbor_list("ijd", atoms, max(rmax, c6_cutoff))
    exponential = 0.0
    c6 = 0.0
    volume = atoms.get_volume()
    elements = sorted(set(symbols))
    counts = {el: int(np.sum(symbols == el)) for el in elements}
    for a in elements:
        for b in elements:
            term = library.pair(a, b)
            if term is None:
                continue
            mask = (symbols[i] == a) & (symbols[j] == b)
            r = d[mask]
            in_range = (r >= term.rmin) & (r <= term.rmax)
            exponential += 0.5 * term.A * np.sum(np.exp(-r[in_range] / term.rho))
            if term.C:
                c6 -= 0.5 * term.C * np.sum(r ** -6.0)
                # Mean-field tail beyond the cutoff: -(1/2) N_a N_b 4 pi C / (3 V rc^3) per ordered pair of types.
                c6 -= 0.5 * counts[a] * counts[b] * 4.0 * np.pi * term.C / (3.0 * volume * c6_cutoff ** 3)
    return EnergyTerms(coulomb, exponential, c6)
