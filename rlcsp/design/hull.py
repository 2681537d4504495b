"""Which designs might exist: CHGNet formation energy and energy above the convex hull of their chemical system.

A gap on target says nothing about whether the compound can be made. The hull here is pymatgen's
``PhaseDiagram`` over CHGNet energies (relaxed, cell and positions) of
  - each element's reference phase (``ChgnetFormation.reference_phase``: ASE's bulk phase; noble gases as atoms and
    molecular elements as dimers in a box, relaxed at fixed cell), and
  - for every cation–anion pair of the design, the charge-balanced binaries its common oxidation states allow, in
    the prototypes ionic binaries most often take: rocksalt, CsCl and zincblende (AX), fluorite and rutile (AX2),
    antifluorite (A2X), corundum (A2X3), ReO3 (AX3) and anti-ReO3 (A3X), with lattices scaled from Shannon radii.
A competing phase outside those prototypes (other binaries, any ternary) is missing from the hull, so a reported
``e_above_hull`` is a lower bound: a design above this hull is above the full CHGNet hull too, while one on it
still needs a hull search (Materials Project, or rlcsp's own CSP) before anyone calls it stable.
Every energy is computed once per process and kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np
from ase import Atoms

from rlcsp.design.chem_rules import common_states, takes_role


@dataclass(frozen=True)
class HullResult:
    """A design's CHGNet energy (eV/atom, relaxed), formation energy and distance above the hull of its competing
    phases (eV/atom; negative when it lies below them, i.e. it would join the hull)."""

    energy: float
    e_form: float
    e_above_hull: float
    decomposition: str  # the competing phases at its composition on their hull, e.g. "RbF + ScF3"


def _ion_distance(cation: str, charge: int, anion: str, anion_charge: int) -> float:
    """Cation–anion contact (Å) from Shannon's mean radii; 2.2 Å when an ion has none."""
    from rlcsp.exceptions import CompositionError
    from rlcsp.ionic_data import ion_data

    try:
        return ion_data(cation, charge).radius + ion_data(anion, anion_charge).radius
    except CompositionError:
        return 2.2


def prototypes(cation: str, anion: str, n_cation: int, n_anion: int, d: float) -> dict[str, Atoms]:
    """Binary prototypes of formula cation_n anion_m with cation–anion contact ``d`` (Å); {} for other ratios."""
    from ase.build import bulk
    from ase.spacegroup import crystal

    a, x = cation, anion
    ratio = (n_cation, n_anion)
    if ratio == (1, 1):
        return {"rocksalt": bulk(a + x, "rocksalt", a=2 * d),
                "CsCl": bulk(a + x, "cesiumchloride", a=2 * d / math.sqrt(3)),
                "zincblende": bulk(a + x, "zincblende", a=4 * d / math.sqrt(3))}
    if ratio == (1, 2):
        return {"fluorite": bulk(a + x + x, "fluorite", a=4 * d / math.sqrt(3)),
                "rutile": crystal([a, x], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                                  cellpar=[2.34 * d, 2.34 * d, 1.51 * d, 90, 90, 90], primitive_cell=True)}
    if ratio == (2, 1):
        return {"antifluorite": bulk(x + a + a, "fluorite", a=4 * d / math.sqrt(3))}
    if ratio == (2, 3):
        return {"corundum": crystal([a, x], basis=[(0, 0, 0.3523), (0.3064, 0, 0.25)], spacegroup=167,
                                    cellpar=[2.49 * d, 2.49 * d, 6.80 * d, 90, 90, 120], primitive_cell=True)}
    if ratio in ((1, 3), (3, 1)):
        centre, edge = (a, x) if ratio == (1, 3) else (x, a)
        cell = 2 * d * np.eye(3)
        return {"ReO3" if ratio == (1, 3) else "anti-ReO3": Atoms(
            [centre, edge, edge, edge], scaled_positions=[(0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)],
            cell=cell, pbc=True)}
    return {}


def binaries(cation: str, anion: str) -> dict[str, Atoms]:
    """Every prototype of every charge-balanced binary the pair's common oxidation states allow."""
    out: dict[str, Atoms] = {}
    for p, q in product(common_states(cation, +1), common_states(anion, -1)):
        g = math.gcd(p, -q)
        n_cation, n_anion = -q // g, p // g
        d = _ion_distance(cation, p, anion, q)
        for name, atoms in prototypes(cation, anion, n_cation, n_anion, d).items():
            out[f"{atoms.get_chemical_formula(empirical=True)} {name}"] = atoms
    return out


class Hull:
    """CHGNet hull of a design's chemical system (module docstring); ``evaluate`` gives a :class:`HullResult`."""

    def __init__(self, device: str = "cpu", fmax: float = 0.05, steps: int = 500):
        from rlcsp.calculators.chgnet import chgnet_calculator, chgnet_relaxer
        from rlcsp.calculators.relax import AseRelaxer, Stage

        stages = (Stage("FIRE", fmax=fmax, steps=steps),)
        self.relaxer = chgnet_relaxer(device, stages=stages)
        self.fixed_cell = AseRelaxer(chgnet_calculator(device), stages=stages, relax_cell=False)
        self._energies: dict[str, tuple[str, float] | None] = {}  # key -> (formula, total energy eV)

    def _relaxed(self, key: str, atoms: Atoms, fixed_cell: bool = False) -> tuple[str, float] | None:
        """(formula, total energy) of ``atoms`` relaxed by CHGNet, computed once; None when the relaxation fails
        (an energy left short of fmax after the step cap still counts: hull energies need meV, not a minimum)."""
        from rlcsp.calculators.relax import FailureReason

        if key not in self._energies:
            result = (self.fixed_cell if fixed_cell else self.relaxer).relax([atoms])[0]
            usable = result.failure in (None, FailureReason.NOT_CONVERGED) and result.energy_per_atom is not None
            self._energies[key] = (atoms.get_chemical_formula(), result.energy_per_atom * len(atoms)) if usable \
                else None
        return self._energies[key]

    def references(self, elements: list[str]) -> list:
        """PDEntries of the elements' reference phases and of the cation–anion binaries among them."""
        from pymatgen.analysis.phase_diagram import PDEntry

        from rlcsp.design.formation import ChgnetFormation

        entries = []
        for element in elements:
            ref = ChgnetFormation.reference_phase(element)
            molecular = len(ref) <= 2 and ref.cell.lengths().min() >= 10.0
            found = self._relaxed(f"element {element}", ref, fixed_cell=molecular)
            if found is not None:
                entries.append(PDEntry(found[0], found[1], name=f"{element} reference"))
        cations = [e for e in elements if takes_role(e, +1)]
        anions = [e for e in elements if takes_role(e, -1)]
        for cation, anion in product(cations, anions):
            if cation == anion:
                continue
            for name, atoms in binaries(cation, anion).items():
                found = self._relaxed(name, atoms)
                if found is not None:
                    entries.append(PDEntry(found[0], found[1], name=name))
        return entries

    def evaluate(self, atoms: Atoms) -> HullResult | None:
        """The design relaxed by CHGNet and placed against its system's hull; None when its relaxation fails."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

        formula = atoms.get_chemical_formula()
        key = hash((atoms.numbers.tobytes(), atoms.cell.array.tobytes(), atoms.positions.tobytes()))
        found = self._relaxed(f"design {formula} {key}", atoms)
        if found is None:
            return None
        elements = sorted(set(atoms.get_chemical_symbols()))
        refs = self.references(elements)
        if {str(e) for r in refs if r.composition.is_element for e in r.composition.elements} != set(elements):
            return None  # an element's reference phase failed: no hull to stand on
        design = PDEntry(found[0], found[1], name="design")
        diagram = PhaseDiagram(refs)  # the competing phases alone, so a design below them gets a negative distance
        decomposition, e_above = diagram.get_decomp_and_e_above_hull(design, allow_negative=True)
        phases = " + ".join(sorted(e.composition.reduced_formula for e in decomposition))
        return HullResult(energy=found[1] / len(atoms), e_form=float(diagram.get_form_energy_per_atom(design)),
                          e_above_hull=float(e_above), decomposition=phases)
