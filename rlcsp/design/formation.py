"""CHGNet formation energies per atom against one reference phase per element (paper a's stability term)."""
from __future__ import annotations

from typing import Sequence

from ase import Atoms


class ChgnetFormation:
    """CHGNet formation energy per atom against a reference phase of each element, unrelaxed.

    References: the bulk phase ASE builds for the element (``ase.build.bulk``); noble gases as atoms in a 10 A
    box; every other element (H, N, O, F, and the molecular or many-atom crystals ASE cannot build: P, S, Se,
    Cl, Br) as a dimer at twice the covalent radius (ASE's bond length where it has one) in a 10 A box. That
    makes formation energies of compounds of those elements approximate (a few tenths of an eV per atom):
    enough for paper a's stability term, not for a convex hull. Evaluated once per element per process.
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._mu: dict[str, float] = {}
        self._calculator = None

    def _energy(self, atoms: Atoms) -> float:
        from rlcsp.calculators.chgnet import chgnet_calculator

        if self._calculator is None:
            self._calculator = chgnet_calculator(self.device)
        atoms = atoms.copy()
        atoms.calc = self._calculator
        return float(atoms.get_potential_energy())

    @staticmethod
    def reference_phase(element: str) -> Atoms:
        from ase.build import bulk
        from ase.data import atomic_numbers, covalent_radii, reference_states

        z = atomic_numbers[element]
        state = reference_states[z] or {}
        box = [10.0, 10.5, 11.0]
        if state.get("symmetry") == "atom":
            return Atoms([element], cell=box, pbc=True)
        try:
            return bulk(element)
        except (ValueError, KeyError, RuntimeError):
            d = state.get("d", 2 * covalent_radii[z])
            return Atoms([element] * 2, positions=[[0, 0, 0], [0, 0, d]], cell=box, pbc=True)

    def reference(self, element: str) -> float:
        if element not in self._mu:
            ref = self.reference_phase(element)
            self._mu[element] = self._energy(ref) / len(ref)
        return self._mu[element]

    def __call__(self, atoms: Atoms) -> float:
        return self.from_energy(atoms.get_chemical_symbols(), self._energy(atoms) / len(atoms))

    def from_energy(self, symbols: Sequence[str], energy_per_atom: float) -> float:
        """The formation energy per atom of a crystal whose CHGNet energy per atom is already known."""
        return energy_per_atom - sum(self.reference(s) for s in symbols) / len(symbols)
