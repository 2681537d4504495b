"""What a pw.x request gives back: a classified outcome, a typed :class:`DftResult`, and the failure exceptions.

Reading pw.x's output lives here too: :func:`classify_output` names the failure an output shows (the runner
picks its retry from it) and :func:`read_output` takes the energy, forces, stress, gap and relaxed structure
from a finished run. Both read files only; starting and stopping pw.x is the runner's job.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from rlcsp.calculators.espresso.bandgap import band_gap
from rlcsp.calculators.espresso.inputs import PwInputs
from rlcsp.exceptions import CalculatorFailed, CalculatorNotFound

HOW_TO_GET_PW = (
    "Install Quantum ESPRESSO (Debian/Ubuntu: `apt-get install quantum-espresso`, which provides pw.x), then "
    "either put pw.x on PATH, add `[espresso]` with `command = /path/to/pw.x` to ASE's config "
    "(~/.config/ase/config.ini or $ASE_CONFIG_PATH), or pass command='/path/to/pw.x'."
)


class DftOutcome(str, Enum):
    """How a pw.x request ended."""

    OK = "ok"
    WRONG_CHARGE = "wrong_charge"  # odd electron count with fixed occupations: "charge is wrong", "is metallic"
    SCF_NOT_CONVERGED = "scf_not_converged"
    RELAX_NOT_CONVERGED = "relax_not_converged"  # vc-relax hit nstep or BFGS gave up; last structure kept
    TOO_FEW_BANDS = "too_few_bands"
    TIMEOUT = "timeout"
    PW_NOT_FOUND = "pw_not_found"
    MISSING_PSEUDOPOTENTIAL = "missing_pseudopotential"
    INVALID_STRUCTURE = "invalid_structure"
    ENGINE_ERROR = "engine_error"  # any other pw.x error, crash or unreadable output

    @property
    def cacheable(self) -> bool:
        """Outcomes that the same inputs would reproduce; a timeout or a missing program may not recur."""
        return self in _DETERMINISTIC


_DETERMINISTIC = {DftOutcome.OK, DftOutcome.WRONG_CHARGE, DftOutcome.SCF_NOT_CONVERGED,
                  DftOutcome.RELAX_NOT_CONVERGED, DftOutcome.TOO_FEW_BANDS}


@dataclass
class DftResult:
    """One DFT request: energies in eV per cell, forces eV/Å, stress eV/Å^3 (ASE's Voigt order), gap in eV.

    ``gap_approximate`` marks a gap from a smeared, spin-polarised retry of a fixed-occupation request.
    ``attempts`` holds the cache record of every pw.x run; ``retries`` is their number less one. ``key`` is
    the request's cache key; ``inputs`` is what the last pw.x run was given (a retry's changed settings).
    ``atoms`` is the final structure of a vc-relax. ``workdir`` names the kept directory of a failed run.
    """

    outcome: DftOutcome
    message: str = ""
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    band_gap: float | None = None
    gap_direct: bool | None = None
    vbm: float | None = None
    cbm: float | None = None
    vbm_kpoint: list[float] | None = None  # scaled reciprocal coordinates
    cbm_kpoint: list[float] | None = None
    fermi_level: float | None = None
    gap_approximate: bool = False
    scf_stalled: bool = False  # an unconverged SCF that made no progress at the end (see scf_stalled)
    atoms: Atoms | None = None
    steps: int = 0
    wall_s: float = 0.0
    retries: int = 0
    key: str = ""
    inputs: dict = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)
    from_cache: bool = False
    workdir: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is DftOutcome.OK

    def to_record(self) -> dict:
        """A JSON-safe record for a :class:`DftCache` (and the project's ``dft_calls`` table)."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("atoms", "from_cache")}
        record["outcome"] = self.outcome.value
        for name in ("forces", "stress"):
            if record[name] is not None:
                record[name] = np.asarray(record[name]).tolist()
        if self.atoms is not None:
            record["atoms"] = {"symbols": self.atoms.get_chemical_symbols(), "cell": self.atoms.cell.array.tolist(),
                               "positions": self.atoms.positions.tolist()}
        record["created"] = time.time()
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DftResult:
        names = {f.name for f in fields(cls)} - {"atoms", "from_cache"}
        values = {k: v for k, v in record.items() if k in names}
        values["outcome"] = DftOutcome(values["outcome"])
        for name in ("forces", "stress"):
            if values.get(name) is not None:
                values[name] = np.asarray(values[name])
        if record.get("atoms"):
            a = record["atoms"]
            values["atoms"] = Atoms(a["symbols"], cell=a["cell"], positions=a["positions"], pbc=True)
        return cls(**values)

    def ase_results(self) -> dict:
        """The calculator's ``results``: ASE's properties plus the gap and where it is."""
        return {"energy": self.energy, "free_energy": self.energy, "forces": self.forces, "stress": self.stress,
                "band_gap": self.band_gap, "gap_direct": self.gap_direct, "vbm": self.vbm, "cbm": self.cbm,
                "vbm_kpoint": self.vbm_kpoint, "cbm_kpoint": self.cbm_kpoint, "fermi_level": self.fermi_level,
                "gap_approximate": self.gap_approximate}


class DftFailed(CalculatorFailed):
    """A DFT request did not give a usable result; ``result`` says why (``result.outcome``)."""

    def __init__(self, result: DftResult):
        super().__init__(f"{result.outcome.value}: {result.message}")
        self.result = result


class PwNotFound(DftFailed, CalculatorNotFound):
    """pw.x is not installed or not where the command says."""


# ----------------------------------------------------------------------------------- reading the output

_ERROR = re.compile(r"Error in routine\s+(\S+)\s+\(\s*-?\d+\s*\):\s*\n\s*(.+)")
_BFGS_DONE = re.compile(r"bfgs converged in\s+\d+\s+scf cycles and\s+(\d+)\s+bfgs steps")
_OVERFLOW = re.compile(r"^\s*\*{9}", re.MULTILINE)  # a Fortran field too narrow for its number


_SCF_ACCURACY = re.compile(r"estimated scf accuracy\s+<\s+([0-9.Ee+-]+)\s+Ry")
STALL_WINDOW = 30  # iterations
STALL_MIN_ITERATIONS = 40  # fewer tell nothing (the tests' electron_maxstep=2 runs)
STALL_FLOOR_RY = 1e-4  # an SCF whose accuracy has come below this is converging, however slowly


def scf_stalled(text: str) -> bool:
    """Whether an unconverged SCF gained less than a decade of accuracy over its last ``STALL_WINDOW`` iterations
    while staying above ``STALL_FLOOR_RY``: charge sloshing between near-degenerate band edges, a metal under fixed
    occupations, which lower mixing does not cure (on elpasolite fillings at 60 Ry such runs sat at 1e-3-0.4 Ry
    for 90 iterations, and then took one or two more full SCFs to be smeared)."""
    accuracy = [float(m) for m in _SCF_ACCURACY.findall(text)]
    if len(accuracy) < STALL_MIN_ITERATIONS:
        return False
    recent, before = min(accuracy[-STALL_WINDOW:]), min(accuracy[:-STALL_WINDOW])
    return recent > STALL_FLOOR_RY and recent > 0.1 * before


def classify_output(text: str, stderr: str, returncode: int | None,
                    calculation: str) -> tuple[DftOutcome, str] | None:
    """The failure a pw.x output shows, or None when it finished normally."""
    if m := _ERROR.search(text):
        routine, message = m.group(1), m.group(2).strip()
        said = f"pw.x error in {routine}: {message}"
        if "charge is wrong" in message or "is metallic" in message:
            return DftOutcome.WRONG_CHARGE, said
        if "too few bands" in message.lower() or "cannot bracket Ef" in message:
            return DftOutcome.TOO_FEW_BANDS, said
        return DftOutcome.ENGINE_ERROR, said
    if m := re.search(r"convergence NOT achieved after\s+(\d+)\s+iterations", text):
        return DftOutcome.SCF_NOT_CONVERGED, f"SCF not converged after {m.group(1)} iterations"
    if "Program PWSCF" not in text:
        tail = stderr.strip()[-400:]
        if returncode in (126, 127) or re.search(r"not find|unable to find|No such file", tail, re.IGNORECASE):
            return DftOutcome.PW_NOT_FOUND, f"pw.x did not start: {tail}. {HOW_TO_GET_PW}"
        return DftOutcome.ENGINE_ERROR, f"pw.x did not start (exit status {returncode}): {tail}"
    if "JOB DONE" not in text:
        return DftOutcome.ENGINE_ERROR, f"pw.x stopped without finishing (exit status {returncode}): " \
                                        f"{stderr.strip()[-400:]}"
    if _OVERFLOW.search(text.partition("End of ")[2]):
        return DftOutcome.ENGINE_ERROR, "eigenvalues past pw.x's print format (f9.4: below -999.9999 eV): " \
                                        "a ghost state of a pseudopotential"
    if calculation != "scf" and not _BFGS_DONE.search(text):
        why = "history already reset" if "history already reset" in text else "nstep reached"
        return DftOutcome.RELAX_NOT_CONVERGED, f"{calculation} did not converge ({why})"
    return None


def read_output(workdir: Path, inputs: PwInputs, calculation: str, outcome: DftOutcome) -> DftResult:
    """Energy, forces, stress, gap (and the final structure of a relaxation) from a finished pw.x output."""
    from ase.io import read

    text = (workdir / "espresso.pwo").read_text(errors="replace")
    final = read(workdir / "espresso.pwo", index=-1, format="espresso-out")
    calc = final.calc
    result = DftResult(outcome, energy=float(calc.results["energy"]), forces=calc.results.get("forces"),
                       stress=calc.results.get("stress"))
    if calculation != "scf":
        m = _BFGS_DONE.search(text)
        result.steps = int(m.group(1)) if m else text.count("!    total energy") - 1
        result.atoms = final.copy()
        result.atoms.calc = None
    if not calc.kpts:
        return result
    nspin = 1 + max(k.s for k in calc.kpts)
    eig = np.array([[k.eps_n for k in calc.kpts if k.s == s] for s in range(nspin)])
    result.fermi_level = calc.get_fermi_level()
    gap = band_gap(eig, n_occupied=inputs.n_occupied,
                   fermi_level=None if inputs.n_occupied else result.fermi_level,
                   tolerance=inputs.smearing_ev or 0.0)
    kpoints = calc.get_ibz_k_points()
    result.band_gap, result.gap_direct, result.vbm, result.cbm = gap.gap, gap.direct, gap.vbm, gap.cbm
    if gap.vbm_k is not None:
        result.vbm_kpoint, result.cbm_kpoint = kpoints[gap.vbm_k].tolist(), kpoints[gap.cbm_k].tolist()
    return result
