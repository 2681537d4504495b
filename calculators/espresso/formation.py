"""Formation energies against elemental reference phases, every term at the compound's own cutoff.

A formation energy means something only when the compound and its references share cutoffs and
pseudopotentials, so :func:`formation_energy` fixes the compound's resolved cutoffs before it computes the
references. References sit at experimental geometries, with no fitted corrections (see :data:`REFERENCES`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ase import Atoms

from rlcsp.calculators.espresso.cache import DftCache
from rlcsp.calculators.espresso.inputs import DftSettings, resolve_inputs
from rlcsp.calculators.espresso.results import DftFailed
from rlcsp.calculators.espresso.runner import PwRunner, run_dft
from rlcsp.exceptions import ConfigError


@dataclass(frozen=True)
class ElementalReference:
    """An element's reference phase at a fixed (experimental) geometry, and the settings it needs."""

    build: Callable[[], Atoms]
    changes: Mapping[str, Any]
    note: str


def _o2() -> Atoms:
    # An orthorhombic box avoids accidental degeneracies; 6-7 A costs a few meV per O against a larger box.
    return Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.2075]], cell=[6.0, 6.5, 7.0], pbc=True)


def _h2() -> Atoms:
    return Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7414]], cell=[6.0, 6.5, 7.0], pbc=True)


def _bulk(symbol: str, structure: str, **kwargs) -> Callable[[], Atoms]:
    from ase.build import bulk

    return lambda: bulk(symbol, structure, **kwargs)


_METAL = {"occupations": "smearing"}
# Experimental geometries, not PBE-relaxed (PBE lattice constants are ~1 % larger; ~5-10 meV/atom here).
# No fitted corrections: PBE overbinds O2, so oxide formation energies come out ~0.7 eV per O atom less
# negative than experiment (Materials Project adds -0.687 eV per O for this).
REFERENCES: dict[str, ElementalReference] = {
    "Si": ElementalReference(_bulk("Si", "diamond", a=5.431), {}, "diamond, a = 5.431 A"),
    "Al": ElementalReference(_bulk("Al", "fcc", a=4.046), _METAL, "fcc metal, a = 4.046 A"),
    "Mg": ElementalReference(_bulk("Mg", "hcp", a=3.209, c=5.211), _METAL, "hcp metal, a = 3.209, c = 5.211 A"),
    "O": ElementalReference(_o2, {"kpts": "gamma", "nspin": 2, "tot_magnetization": 2.0},
                            "triplet O2 (1.2075 A) in a 6 x 6.5 x 7 A box"),
    "H": ElementalReference(_h2, {"kpts": "gamma"}, "H2 (0.7414 A) in a 6 x 6.5 x 7 A box"),
}


def reference_energies(elements: Iterable[str], settings: DftSettings, *, runner: PwRunner | None = None,
                       cache: DftCache | None = None) -> dict[str, float]:
    """eV per atom of each element's reference phase with ``settings``' cutoffs and pseudopotentials.

    Bulk references keep ``settings``' k-point density (``kppa``; an explicit mesh for one cell means nothing
    for another); each reference's own changes (smearing for metals, a triplet for O2) are applied on top.
    Raises :class:`DftFailed` when a reference cannot be computed.
    """
    energies = {}
    for element in sorted(set(elements)):
        if element not in REFERENCES:
            raise ConfigError(f"no elemental reference for {element}; known: {', '.join(sorted(REFERENCES))}")
        ref = REFERENCES[element]
        atoms = ref.build()
        ref_settings = replace(settings, **{"kpts": None, **ref.changes})
        result = run_dft(atoms, ref_settings, runner=runner, cache=cache)
        if not result.ok:
            raise DftFailed(result)
        energies[element] = result.energy / len(atoms)
    return energies


def formation_energy_per_atom(atoms: Atoms, energy: float, references: Mapping[str, float]) -> float:
    """(E − Σ n_i μ_i) / N, in eV/atom, from a cell energy and per-atom elemental reference energies."""
    symbols = atoms.get_chemical_symbols()
    missing = sorted(set(symbols) - set(references))
    if missing:
        raise ConfigError(f"no reference energy for {', '.join(missing)}")
    return (energy - sum(references[s] for s in symbols)) / len(symbols)


def formation_energy(atoms: Atoms, settings: DftSettings | None = None, *, runner: PwRunner | None = None,
                     cache: DftCache | None = None) -> float:
    """Formation energy per atom of ``atoms`` against :data:`REFERENCES`, all at one cutoff.

    The cutoff is the compound's (the largest per-element one), so every reference uses it too.
    """
    settings = settings or DftSettings()
    inputs = resolve_inputs(atoms, settings)
    data = inputs.description["input_data"]
    fixed = replace(settings, ecutwfc=data["ecutwfc"], ecutrho=data["ecutrho"])
    result = run_dft(atoms, fixed, runner=runner, cache=cache)
    if not result.ok:
        raise DftFailed(result)
    references = reference_energies(set(atoms.get_chemical_symbols()), fixed, runner=runner, cache=cache)
    return formation_energy_per_atom(atoms, result.energy, references)
