"""GULP potential libraries (``species``, ``buck``, ``spring``), read once and shared by every engine.

The same ``lib2.lib`` file feeds GULP itself and the LAMMPS engine, so both see identical parameters.
Anything we do not implement raises :class:`LibraryError` naming the file and line, rather than being
silently ignored and giving wrong energies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from rlcsp.exceptions import LibraryError
from rlcsp.inputs import INPUTS, resolve

DEFAULT_LIBRARY = INPUTS / "lib2.lib"
# GULP's Coulomb constant (eV*A), used by every engine of these libraries; CODATA's value gives energies
# 2-3e-4 eV/atom too high.
GULP_COULOMB = 14.3997584

_KINDS = {"core": "core", "cor": "core", "c": "core", "shel": "shel", "shell": "shel", "she": "shel", "s": "shel"}
_SUPPORTED = {"species", "buck", "buckingham", "spring"}
# Keywords that may open a block in a GULP library; we recognise them only to reject them clearly.
_KNOWN_UNSUPPORTED = {
    "lennard", "morse", "harmonic", "three", "torsion", "eam_density", "eam_functional", "reaxff",
    "general", "coulomb", "spline", "manybody", "polynomial", "qtaper", "element", "cutp", "ljbuffered",
    "tersoff", "sw2", "sw3", "brenner", "buck4", "bsm", "covexp", "outofplane", "uff", "epsilon", "tortaper",
}


@dataclass(frozen=True)
class Buckingham:
    """E(r) = A exp(-r/rho) for rmin <= r <= rmax, minus C/r^6 (summed over the lattice under GULP's c6)."""

    a: str
    b: str
    A: float
    rho: float
    C: float
    rmin: float
    rmax: float
    line: int

    def key(self) -> frozenset[str]:
        return frozenset((self.a, self.b))


@dataclass
class Library:
    """A parsed GULP library: species charges keyed by (element, 'core'|'shel') and pair potentials."""

    path: str
    charges: dict[tuple[str, str], float] = field(default_factory=dict)
    buckingham: list[Buckingham] = field(default_factory=list)
    springs: dict[str, float] = field(default_factory=dict)
    _lines: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def elements(self) -> set[str]:
        return {el for el, _ in self.charges}

    def charge(self, element: str) -> float:
        """Core charge of a rigid ion; a shell-model species is rejected with the line that defines it."""
        if (element, "shel") in self.charges:
            raise LibraryError(
                f"{self.path}:{self._lines[(element, 'shel')]}: {element} is a shell-model species "
                "(core + shell); the rigid-ion Buckingham engine cannot use it. Use GULP for shell models."
            )
        if (element, "core") not in self.charges:
            raise LibraryError(
                f"element {element} has no charge in {self.path} (species block); "
                f"the library defines {', '.join(sorted(self.elements)) or 'no species'}"
            )
        return self.charges[(element, "core")]

    def check_elements(self, elements: set[str] | list[str]) -> None:
        """Raise a LibraryError unless every element is a rigid ion with a charge in this library."""
        for el in sorted(set(elements)):
            self.charge(el)

    def barrier(self, a: str, b: str) -> float:
        """Where the pair energy of two ions (Coulomb, dispersion, and the exponential at every distance) peaks
        before it falls into its Buckingham catastrophe, in Å; 0 where it has no peak beyond 0.5 Å.

        Two ions closer than this attract each other: relaxed from there, they fall into the well.
        """
        term = self.pair(a, b)
        r = np.linspace(0.5, 4.0, 3501)
        v = GULP_COULOMB * self.charge(a) * self.charge(b) / r
        if term is not None:
            v = v + term.A * np.exp(-r / term.rho) - term.C / r**6
        peaks = np.nonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]))[0]
        return float(r[peaks[-1] + 1]) if len(peaks) else 0.0

    def pair(self, a: str, b: str) -> Buckingham | None:
        """The core-core Buckingham term between two elements, if the library has one."""
        want = frozenset((a, b))
        for term in self.buckingham:
            if term.key() == want:
                return term
        return None


def _element(label: str, path: str, lineno: int) -> str:
    m = re.fullmatch(r"([A-Z][a-z]?)\d*", label)
    if not m or m.group(1) not in chemical_symbols[1:]:
        raise LibraryError(f"{path}:{lineno}: {label!r} is not an element symbol")
    return m.group(1)


def _float(token: str, path: str, lineno: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise LibraryError(f"{path}:{lineno}: expected a number for {what}, got {token!r}") from None


def _take_site(tokens: list[str], path: str, lineno: int) -> tuple[str, str]:
    """Consume 'El [core|shel]' from the front of tokens."""
    if not tokens:
        raise LibraryError(f"{path}:{lineno}: missing species label")
    el = _element(tokens.pop(0), path, lineno)
    kind = "core"
    if tokens and tokens[0].lower() in _KINDS:
        kind = _KINDS[tokens.pop(0).lower()]
    return el, kind


def parse_library(text: str, path: str = "<string>") -> Library:
    lib = Library(path=path)
    block: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        head = tokens[0].lower()
        if head in _SUPPORTED:
            block = "buck" if head == "buckingham" else head
            extra = [t for t in tokens[1:] if not t.isdigit()]
            if block == "buck" and any(t.lower() not in ("inter", "intra", "bond") for t in extra):
                raise LibraryError(f"{path}:{lineno}: unsupported buck option(s) {' '.join(extra)!r}")
            continue
        if head in _KNOWN_UNSUPPORTED or (head.isalpha() and len(head) > 2 and head not in _KINDS
                                          and not re.fullmatch(r"[A-Z][a-z]?\d*", tokens[0])):
            raise LibraryError(f"{path}:{lineno}: unsupported or unknown library keyword {tokens[0]!r}")
        if block is None:
            raise LibraryError(f"{path}:{lineno}: data line outside any species/buck/spring block: {line!r}")
        if block == "species":
            el, kind = _take_site(tokens, path, lineno)
            if len(tokens) != 1:
                raise LibraryError(f"{path}:{lineno}: species line must be 'El core|shel charge', got {line!r}")
            lib.charges[(el, kind)] = _float(tokens[0], path, lineno, "charge")
            lib._lines[(el, kind)] = lineno
        elif block == "spring":
            el, _ = _take_site(tokens, path, lineno)
            if not tokens:
                raise LibraryError(f"{path}:{lineno}: spring line needs a force constant")
            lib.springs[el] = _float(tokens[0], path, lineno, "spring constant")
        else:
            a, ka = _take_site(tokens, path, lineno)
            b, kb = _take_site(tokens, path, lineno)
            nums = [_float(t, path, lineno, "buck parameter") for t in tokens]
            if len(nums) == 4:
                A, rho, C, rmax = nums
                rmin = 0.0
            elif len(nums) == 5:
                A, rho, C, rmin, rmax = nums
            else:
                raise LibraryError(
                    f"{path}:{lineno}: buck line needs 'El1 core El2 core A rho C [rmin] rmax', got {line!r}"
                )
            if rho <= 0 or rmax <= rmin:
                raise LibraryError(f"{path}:{lineno}: need rho > 0 and rmax > rmin, got {line!r}")
            if ka == "core" and kb == "core":
                lib.buckingham.append(Buckingham(a, b, A, rho, C, rmin, rmax, lineno))
            else:
                # Shell terms are kept only as a marker: using that element raises in Library.charge().
                lib._lines.setdefault((a if ka == "shel" else b, "shel"), lineno)
    if not lib.charges:
        raise LibraryError(f"{path}: no species block; a library must give the charge of every species")
    return lib


_CACHE: dict[tuple[str, float], Library] = {}


def load_library(path: str | Path | None = None) -> Library:
    """Read a GULP library file, cached by path and mtime: a path, or the name of one shipped in rlcsp.inputs
    (``lib2.lib``, the default)."""
    p = resolve(path) if path is not None else DEFAULT_LIBRARY
    if not p.is_file():
        raise LibraryError(f"potential library {str(p)!r} not found")
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = parse_library(p.read_text(), str(p))
    return _CACHE[key]
