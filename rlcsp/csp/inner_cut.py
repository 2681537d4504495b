"""GULP's inner cutoff of the Buckingham exponential, as a test on a relaxation's starting structure.

GULP evaluates A exp(-r/rho) only for rmin <= r <= rmax (1.2-12 A in lib2.lib). A cation-anion pair that starts
inside rmin therefore feels only the Coulomb attraction (about 60 eV/A for Y-O at 1.19 A) and collapses, and FUSE
records a failed relaxation. rlcsp's LAMMPS minimiser keeps the exponential while it minimises and rescues such
candidates; the ``gulp_inner_cut`` quirk fails them instead. After the 0.05 A rattle the median closest pair of a
random candidate is 1.33 A, so this decides the fate of a sizeable share of candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from rlcsp.csp.checks import periodic_pairs
from rlcsp.exceptions import ConfigError


@dataclass(frozen=True)
class InnerCut:
    """Opposite-charge pairs with an exponential term, and the distance below which GULP drops that term."""

    rmin: dict[frozenset[int], float]

    @classmethod
    def from_library(cls, path: str | None, elements: set[str] | None = None) -> InnerCut:
        """The library's collapsing pairs, among ``elements`` only when given."""
        if path is None:
            raise ConfigError("the gulp_inner_cut quirk needs a Buckingham library (library=...)")
        from rlcsp.calculators.library import load_library

        library = load_library(path)
        rmin = {}
        for term in library.buckingham:
            charges = [library.charges.get((el, "core"), 0.0) for el in (term.a, term.b)]
            wanted = elements is None or {term.a, term.b} <= set(elements)
            if wanted and term.A > 0 and term.rmin > 0 and charges[0] * charges[1] < 0:
                rmin[frozenset((atomic_numbers[term.a], atomic_numbers[term.b]))] = term.rmin
        return cls(rmin)

    def describe(self) -> str:
        from ase.data import chemical_symbols

        return ", ".join(f"{'-'.join(chemical_symbols[z] for z in sorted(pair))} < {r:g} A"
                         for pair, r in sorted(self.rmin.items(), key=lambda kv: sorted(kv[0])))

    def pair_inside(self, atoms: Atoms) -> str:
        """The closest pair inside its inner cutoff, described, or "" when there is none."""
        if not self.rmin or len(atoms) < 2:
            return ""
        i, j, d = periodic_pairs(atoms.positions, atoms.cell.array, max(self.rmin.values()))
        numbers = atoms.numbers
        for k in np.argsort(d):
            r = self.rmin.get(frozenset((int(numbers[i[k]]), int(numbers[j[k]]))))
            if r is not None and d[k] < r:
                return f"{atoms[i[k]].symbol}-{atoms[j[k]].symbol} at {d[k]:.3f} A"
        return ""
