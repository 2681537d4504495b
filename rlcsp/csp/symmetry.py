"""Space groups, symmetrised CIFs and distinct minima of found structures (spglib and pymatgen), so that a result
reads as a chemist reads a crystal rather than as a P1 list of positions."""
from __future__ import annotations

from pathlib import Path

from ase import Atoms

SYMPRECS = (0.1, 1e-3)  # loose (FUSE's analysis of its reference set) and tight


def space_group(atoms: Atoms, symprec: float = 0.1) -> str:
    """International symbol and number, e.g. "Pm-3m (221)"; "P1 (1)" when spglib finds nothing better."""
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    return spglib.get_spacegroup(cell, symprec=symprec) or "P1 (1)"


def space_groups(atoms: Atoms) -> dict[str, str]:
    return {f"symprec {p:g}": space_group(atoms, p) for p in SYMPRECS}


def write_conventional_cif(atoms: Atoms, path: str | Path, symprec: float = 0.1) -> None:
    """The conventional standard cell with its space group's symmetry operations (pymatgen's CifWriter)."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = AseAtomsAdaptor.get_structure(atoms)
    conventional = SpacegroupAnalyzer(structure, symprec=symprec).get_conventional_standard_structure()
    CifWriter(conventional, symprec=symprec).write_file(str(path))


def same_structure(a: Atoms, b: Atoms) -> bool:
    """pymatgen's StructureMatcher with its default tolerances (any supercell, volume scaled)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    return StructureMatcher().fit(AseAtomsAdaptor.get_structure(a), AseAtomsAdaptor.get_structure(b))


def distinct_minima(structures: list[dict], n: int) -> list[dict]:
    """The ``n`` lowest structurally distinct entries of ``structures`` (dicts with "energy", "atoms" and
    "relaxation"); each keeps the first relaxation that found it."""
    chosen: list[dict] = []
    for entry in sorted(structures, key=lambda s: (s["energy"], s["relaxation"])):
        twin = next((c for c in chosen if abs(c["energy"] - entry["energy"]) < 1e-3
                     and same_structure(c["atoms"], entry["atoms"])), None)
        if twin is None:
            chosen.append(dict(entry))
            if len(chosen) == n:
                break
        elif entry["relaxation"] < twin["relaxation"]:
            twin["relaxation"] = entry["relaxation"]
    return chosen
