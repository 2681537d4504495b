"""Is a relaxed structure new? An energy window plus a structural comparison, or FUSE's rounded energies.

FUSE compared rounded energies for exact equality, so two different structures with equal energies counted as
one, and one structure relaxed to energies 1e-6 apart counted as two. rlcsp compares structures whose energies lie
within ``energy_tolerance`` with pymatgen's StructureMatcher (with supercells allowed, since the genome can
describe one crystal in cells of different sizes); only matches are duplicates. The quirk ``energy_uniqueness``
(EnergyIndex) keeps FUSE's rule, which the FUSE profiles' rewards (non-unique penalties) depend on.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable

from ase import Atoms


class UniquenessIndex:
    """Relaxed structures seen so far, sorted by energy per atom."""

    def __init__(self, energy_tolerance: float = 1e-4):
        self.energy_tolerance = energy_tolerance
        self._energies: list[float] = []
        self._structures: list = []
        self._reduced_flags: list[bool] = []  # whether each stored structure is reduced yet
        self._matcher = None

    def __len__(self) -> int:
        return len(self._energies)

    def _match(self, a, b) -> bool:
        if self._matcher is None:
            from pymatgen.analysis.structure_matcher import StructureMatcher

            self._matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True,
                                             attempt_supercell=True, scale=True)
        return bool(self._matcher.fit(a, b, skip_structure_reduction=True))

    @staticmethod
    def _reduced(structure):
        """The Niggli-reduced primitive cell, as StructureMatcher reduces both structures before every fit: done
        at most once per structure here, and only for those that meet another in the energy window, since a walker
        that relaxes back into a known minimum compares against it again and again."""
        return structure.get_reduced_structure(reduction_algo="niggli").get_primitive_structure()

    def _stored(self, k: int):
        if not self._reduced_flags[k]:
            self._structures[k] = self._reduced(self._structures[k])
            self._reduced_flags[k] = True
        return self._structures[k]

    def add(self, atoms: Atoms, energy: float) -> bool:
        """Record a structure; True if no structure within the energy window matches it."""
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(atoms)
        lo = bisect.bisect_left(self._energies, energy - self.energy_tolerance)
        hi = bisect.bisect_right(self._energies, energy + self.energy_tolerance)
        if lo < hi:
            structure = self._reduced(structure)
        unique = not any(self._match(structure, self._stored(k)) for k in range(lo, hi))
        if unique:
            self._insert(structure, energy, lo < hi)
        return unique

    def insert(self, atoms: Atoms, energy: float) -> None:
        """Add a structure already known to be unique (restoring a run from its store)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        self._insert(AseAtomsAdaptor.get_structure(atoms), energy, False)

    def _insert(self, structure, energy: float, reduced: bool) -> None:
        at = bisect.bisect_right(self._energies, energy)
        self._energies.insert(at, energy)
        self._structures.insert(at, structure)
        self._reduced_flags.insert(at, reduced)


class EnergyIndex:
    """FUSE's uniqueness (fuse.md §3.2 step 4): a structure is new when its energy rounded to 1e-6 eV/atom is not
    among those seen. It holds energies only, so a resumed run rebuilds it from its steps.

    FUSE's list also holds its failed relaxations' sentinels (1e20/N), which no reward reads: rlcsp counts a
    failed relaxation as not new, as in its own mode.
    """

    def __init__(self, energies: Iterable[float] = ()):
        self._seen = {round(e, 6) for e in energies}

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, atoms: Atoms, energy: float) -> bool:
        """Record an energy; True if no earlier energy rounds to the same value (``atoms`` is not looked at)."""
        key = round(energy, 6)
        new = key not in self._seen
        self._seen.add(key)
        return new
