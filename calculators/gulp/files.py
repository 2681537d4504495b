"""GULP's files: ``.gin`` inputs written, ``.got`` outputs and ``dump`` restart files parsed.

These read and write text only, so they are tested on recorded GULP runs without a GULP binary. Outputs
are parsed into what rlcsp decides on (energy, convergence verdict, errors, final cell): an overflowed
energy (``****``) or a symmetry run's asymmetric unit is reported as such, never guessed at.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from rlcsp.exceptions import CalculatorFailed, ConfigError, InvalidStructure

PREFIX = "gulp"  # file stem substituted for PREFIX in the command; also works with a fixed "gulp.gin" command


# ----------------------------------------------------------------------------------------------- input


def check_periodic(atoms: Atoms) -> None:
    """GULP bulk runs need a non-empty 3D periodic cell; anything else cannot be written as a .gin."""
    if not len(atoms):
        raise InvalidStructure("empty structure")
    if not all(atoms.pbc):
        raise InvalidStructure("GULP bulk runs need a structure periodic in all three directions")
    if not (np.isfinite(atoms.cell.array).all() and np.isfinite(atoms.positions).all()):
        raise InvalidStructure("non-finite cell or positions")
    if abs(atoms.cell.volume) < 1e-6:
        raise InvalidStructure("singular cell (zero volume)")


def write_gin(atoms: Atoms, keywords: str, options: Sequence[str], library: str | None, title: str = "rlcsp",
              *, dump: str | None = f"{PREFIX}.res", shells: Iterable[str] = ()) -> str:
    """A GULP input in ASE's layout: charges come from the library's ``species``, so coordinate lines carry none.

    ``shells`` names elements that are core-shell species in the library: each gets a ``shel`` line on its core.
    ``options`` is read, never changed; ``dump`` is added unless an option already asks for one.
    """
    check_periodic(atoms)
    if "\n" in keywords.strip():
        raise ConfigError(f"GULP keywords must be one line, got {keywords!r}")
    shells = set(shells)
    lines = [keywords.strip(), "title", title, "end", "cell",
             " ".join(f"{v:.6f}" for v in atoms.cell.cellpar()), "fractional"]
    for symbol, xyz in zip(atoms.get_chemical_symbols(), atoms.get_scaled_positions()):
        coords = " ".join(f"{v:.9f}" for v in xyz)
        lines.append(f"{symbol:<2} core {coords}")
        if symbol in shells:
            lines.append(f"{symbol:<2} shel {coords}")
    if library:
        lines.append(f"library {library}")
    lines.extend(options)
    if dump and not any(opt.split()[:1] == ["dump"] for opt in options):
        lines.append(f"dump {dump}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- output

_FINAL = re.compile(r"^\s*Final energy\s*=\s*(\S+)\s*eV")
# Without symmetry GULP prints "Total lattice energy = X eV"; with it, "Primitive unit cell = X eV" in a
# "Total lattice energy :" block (the kJ/mol block below it has other units, so the eV anchor skips it).
_TOTAL = re.compile(r"^\s*(?:Total lattice energy|Primitive unit cell)\s*=\s*(\S+)\s*eV")
_GNORM = re.compile(r"^\s*Final Gnorm\s*=\s*(\S+)")
_CYCLE = re.compile(r"^\s*Cycle:\s*(\d+)")
_BANNER = re.compile(r"^\s*\*{4}\s+(.*?)\s*\*{4}\s*$")  # "  **** Optimisation achieved ****"
_ERROR = re.compile(r"^\s*!!\s*ERROR\s*:?\s*(.*?)\s*$")
_OPT_HEADER = re.compile(r"^\*\s+optimise\s+-")  # GULP's echo of the opti keyword
_OPT_START = re.compile(r"Start of \w+ optimisation")
_LABEL = re.compile(r"([A-Z][a-z]?)\d*$")
_ACHIEVED = "Optimisation achieved"


def _number(token: str) -> float | None:
    """A GULP number, or None for a Fortran overflow field (``****``) or anything unreadable."""
    try:
        return float(token)
    except ValueError:
        return None


def _element(label: str) -> str | None:
    m = _LABEL.match(label)
    return m.group(1) if m and m.group(1) in chemical_symbols[1:] else None


@dataclass
class GulpOutput:
    """What one GULP run reported. Energies are eV per cell (the primitive cell for symmetry runs).

    ``converged`` means the run gave what it was asked for: an optimisation that printed "Optimisation
    achieved", or a single point (``is_optimisation`` False, nothing to converge) that printed an energy.
    Coordinates are cores only. For symmetry runs they are GULP's asymmetric unit (``asymmetric_unit``),
    which rlcsp does not expand, so :meth:`atoms` is None there.
    """

    energy: float | None = None
    initial_energy: float | None = None
    energy_overflow: bool = False
    is_optimisation: bool = False
    converged: bool = False
    termination: str = ""
    cycles: int = 0
    gnorm: float | None = None
    cellpar: np.ndarray | None = None
    lattice: np.ndarray | None = None
    symbols: list[str] = field(default_factory=list)
    scaled_positions: np.ndarray | None = None
    asymmetric_unit: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) or None

    def atoms(self) -> Atoms | None:
        """The final full cell, when GULP printed one (P1 runs); None otherwise."""
        if self.scaled_positions is None or self.asymmetric_unit or (self.lattice is None and self.cellpar is None):
            return None
        cell = self.lattice if self.lattice is not None else self.cellpar
        return Atoms(self.symbols, cell=cell, scaled_positions=self.scaled_positions, pbc=True)


def _table_rows(lines: list[str], start: int, header: bool) -> list[list[str]]:
    """Rows of the dashed table after lines[start]: past the rule below its header, if it has one."""
    body = 2 if header else 1
    rules, rows = 0, []
    for line in lines[start + 1:]:
        if line.strip().startswith("-----"):
            rules += 1
            if rules > body:
                break
        elif rules == body and line.strip():
            rows.append(line.split())
    return rows


def parse_gout(text: str) -> GulpOutput:
    """Parse a GULP standard output (``.got``/``.gout``) of one configuration."""
    out = GulpOutput()
    lines = text.splitlines()
    final_energy: str | None = None
    totals: list[str] = []
    banner: list[str] = []
    started = False  # GULP's "**** ... ****" verdict follows the optimisation cycles
    i = 0
    try:
        for i, line in enumerate(lines):
            if m := _FINAL.match(line):
                final_energy = m.group(1)
            elif m := _TOTAL.match(line):
                totals.append(m.group(1))
            elif m := _GNORM.match(line):
                out.gnorm = _number(m.group(1))
            elif m := _CYCLE.match(line):
                out.cycles = int(m.group(1))
            elif m := _ERROR.match(line):
                out.errors.append(m.group(1))
            elif _OPT_HEADER.match(line):
                out.is_optimisation = True
            elif _OPT_START.search(line):
                started = True
            elif (m := _BANNER.match(line)) and started and not out.termination:
                banner.append(m.group(1))
                if i + 1 >= len(lines) or not _BANNER.match(lines[i + 1]):
                    out.termination = " ".join(banner)
            elif "Cartesian lattice vectors (Angstroms)" in line:
                rows = [r.split() for r in lines[i + 1:i + 6] if r.strip()][:3]
                out.lattice = np.array([[float(v) for v in r[:3]] for r in rows])
            elif line.strip().startswith("Final cell parameters"):
                par = {r[0]: float(r[1]) for r in _table_rows(lines, i, header=False)}
                out.cellpar = np.array([par[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")])
            elif "Final fractional coordinates of atoms" in line or "Final asymmetric unit coordinates" in line:
                out.asymmetric_unit = "asymmetric" in line
                cores = [r for r in _table_rows(lines, i, header=True) if r[2] == "c"]
                out.symbols = [_element(r[1]) or r[1] for r in cores]
                out.scaled_positions = np.array([[float(v) for v in r[3:6]] for r in cores])
    except (ValueError, KeyError, IndexError) as err:
        raise CalculatorFailed(f"unreadable GULP output at line {i + 1}: {lines[i].strip()!r} ({err})") from None
    # "Final energy" is the optimised energy; an overflowed one means no energy, not the last total line.
    chosen = final_energy if final_energy is not None else (totals[-1] if totals else None)
    if chosen is not None:
        out.energy = _number(chosen)
        out.energy_overflow = out.energy is None
    if totals:
        out.initial_energy = _number(totals[0])
    if out.errors:
        out.converged = False
    elif out.is_optimisation:
        out.converged = out.termination == _ACHIEVED and out.energy is not None
    else:
        out.converged = out.energy is not None
    return out


@dataclass
class GulpDump:
    """A GULP input or ``dump`` restart file (a dump is an input): first keyword line, structure, energy."""

    keywords: str
    atoms: Atoms
    energy: float | None  # the dump's ``totalenergy`` (eV per cell), None in a plain input


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_FRAC_ROW = re.compile(rf"^\s*([A-Z][a-z]?\d*)\s+(?:(core|cor|c|shel|she|s|bcor|bshe)\s+)?{_NUM}\s+{_NUM}\s+{_NUM}\b")


def parse_dump(text: str) -> GulpDump:
    """Read the cell, the ``fractional`` cores and ``totalenergy`` of a GULP dump (or any P1 bulk input).

    Only P1 bulk files are read: a ``space`` group would leave just the asymmetric unit, so it is refused.
    """
    lines = text.splitlines()
    keywords, cellpar, symbols, frac, energy = "", None, [], [], None
    i = 0
    while i < len(lines):
        words = lines[i].split()
        head = words[0].lower() if words else ""
        if not words or head.startswith("#"):
            pass
        elif not keywords:
            keywords = " ".join(words)
        elif head == "space":
            raise CalculatorFailed("GULP file uses a space group; rlcsp reads only P1 (fractional, no space)")
        elif head == "cell":
            i += 1
            cellpar = [_number(v) for v in lines[i].split()[:6]] if i < len(lines) else []
            if len(cellpar) != 6 or None in cellpar:
                raise CalculatorFailed(f"unreadable cell in GULP file: {lines[i - 1:i + 1]!r}")
        elif head.startswith("frac"):
            while i + 1 < len(lines) and (m := _FRAC_ROW.match(lines[i + 1])):
                i += 1
                element = _element(m.group(1))
                if element is None:
                    raise CalculatorFailed(f"unknown element in GULP coordinate line {lines[i]!r}")
                if (m.group(2) or "core").lstrip("b").startswith("c"):  # cores only, as in parse_gout
                    symbols.append(element)
                    frac.append([float(v) for v in m.group(3, 4, 5)])
        elif head == "totalenergy":
            energy = _number(words[1])
        i += 1
    if cellpar is None or not symbols:
        raise CalculatorFailed("GULP file has no cell and fractional coordinates")
    return GulpDump(keywords, Atoms(symbols, cell=cellpar, scaled_positions=frac, pbc=True), energy)
