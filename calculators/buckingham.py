"""Rigid-ion Buckingham + Coulomb as an ASE calculator, computed by LAMMPS with GULP's conventions.

GULP's model (fuse.md section 6.2): Ewald Coulomb with k_e = 14.3997584 eV*A, A exp(-r/rho) only for
rmin <= r <= rmax, and -C/r^6 summed over the whole lattice (``c6='ewald'``, GULP's ``c6`` keyword) or cut
at rmax (``c6='cutoff'``). LAMMPS computes everything except the ``r < rmin`` exclusion of the exponential,
which is subtracted here exactly (it only matters for pathological, overlapping structures).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from rlcsp.calculators.lammps_session import LammpsBuckingham
from rlcsp.calculators.library import Library, load_library
from rlcsp.exceptions import CalculatorFailed


def short_range_exclusion(atoms: Atoms, library: Library) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and strain derivative dE/d(strain) (3x3, eV) removing A exp(-r/rho) below rmin."""
    forces = np.zeros((len(atoms), 3))
    virial = np.zeros((3, 3))
    rmin = max((t.rmin for t in library.buckingham), default=0.0)
    if rmin <= 0.0:
        return 0.0, forces, virial
    i, j, d, D = neighbor_list("ijdD", atoms, rmin)
    symbols = np.array(atoms.get_chemical_symbols())
    energy = 0.0
    for term in library.buckingham:
        mask = (((symbols[i] == term.a) & (symbols[j] == term.b)) | ((symbols[i] == term.b) & (symbols[j] == term.a)))
        mask &= d < term.rmin
        if not mask.any():
            continue
        r, vec = d[mask], D[mask]
        if np.any(r < 1e-8):
            raise CalculatorFailed("two atoms collapsed onto the same position")
        e = term.A * np.exp(-r / term.rho)
        energy -= 0.5 * e.sum()  # each pair appears twice in the list
        # The removed term has dE/dr = +A/rho exp(-r/rho); D points from i to j, so F_i = +dE/dr * D/r.
        dEdr = (e / term.rho)[:, None] * vec / r[:, None]
        np.add.at(forces, i[mask], dEdr)
        virial += 0.5 * (vec.T @ dEdr)
    return energy, forces, virial


class BuckinghamCalculator(Calculator):
    """ASE calculator for GULP-format rigid-ion Buckingham libraries; one LAMMPS instance per calculator."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters = {"library": None, "c6": "ewald", "accuracy": 1e-10}

    def __init__(self, library: str | Path | Library | None = None, c6: str = "ewald", accuracy: float = 1e-10,
                 **kwargs):
        super().__init__(**kwargs)
        self.library = library if isinstance(library, Library) else load_library(library)
        self.parameters.update(library=self.library.path, c6=c6, accuracy=accuracy)
        self.session = LammpsBuckingham(self.library, c6=c6, accuracy=accuracy)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self.session.load(atoms)
        energy = self.session.energy()
        forces = self.session.forces()
        stress = self.session.stress()
        de, df, virial = short_range_exclusion(atoms, self.library)
        energy += de
        forces += df
        if de:
            s = virial / atoms.get_volume()
            stress += np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        if not (np.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(stress))):
            raise CalculatorFailed("LAMMPS returned a non-finite energy, force or stress")
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": stress}

    def reset(self) -> None:
        super().reset()
        session = getattr(self, "session", None)  # ASE's __init__ resets before the session exists
        if session is not None:
            session.reset()

    def close(self) -> None:
        self.session.close()
