"""FUSE's discrete genome (string + instructions), random genomes and assembly into atoms (fuse.md §1.2-1.6).

Moves act on the genome only; ``assemble`` turns it into an unrelaxed grid structure. ``fuse_compatible`` (True,
or names from rlcsp.csp.quirks) reproduces FUSE's documented quirks (§7): the lattice type re-drawn after the size was
drawn, no cap of the formula-unit count at ``max_fus``, and γ = 120 layer offsets applied as Cartesian rather than
lattice vectors.

The γ = 120 offset convention is a gene of its own (``Instructions.offsets``). Lattice fractions stack the
triangular nets close-packed (ABC); FUSE's Cartesian multiples of ap give another stacking. Random instructions
draw from ``styles``, FUSE's Cartesian style alone by default: with both styles, 43 % of check-passing random
Y2Ti2O7 genomes were γ = 120 lattice-style cells that FUSE never builds, lattice-style fits of FUSE's GMs relaxed
to the Ima2 trap (−35.071795 eV/atom) and Cartesian ones to the GM (bench/gm_genomes.py), and 5 of 9 walkers
ended in that trap. ``styles=OFFSET_STYLES`` keeps the lattice style as an opt-in gene.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
from ase import Atoms

from rlcsp.composition import Composition
from rlcsp.exceptions import CompositionError, InvalidMove, InvalidStructure
from rlcsp.csp.quirks import quirk_set

VACANCY = 120
LATTICE_TYPES = ("cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic", "triclinic")
MAX_AX = 40
TRICLINIC_ANGLES = (60.0, 75.0, 90.0, 105.0, 120.0, 150.0)
# Layer offsets in units of the sub-module vectors a1, a2 (FUSE's ``ptrans``), keyed by γ.
LAYER_OFFSETS = {90.0: ((0.0, 0.0), (0.5, 0.5)), 120.0: ((0.0, 0.0), (1 / 3, 2 / 3), (2 / 3, 1 / 3))}
# How those numbers become a shift: fractions of a1, a2, or FUSE's Cartesian multiples of ap (same for γ = 90).
OFFSET_STYLES = ("lattice", "cartesian")
# Fractional coordinates of the four sites of a sub-module (cell ap x ap x ap/2).
SITES = np.array([[0.0, 0.0, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.0, 0.5, 0.5]])
_MAX_DRAWS = 20000


@dataclass(frozen=True)
class Instructions:
    """FUSE's instruction vector: sub-module edge, lattice type, cell in sub-modules, angles, layer offsets.

    ``offsets`` is how the layer offsets apply (``OFFSET_STYLES``); for γ = 90 both styles give the same
    structure, so it is always "lattice" there.
    """

    ap: float
    lattice: int
    na: int
    nb: int
    nc: int
    angles: tuple[float, float, float]
    translations: tuple[int, ...]
    offsets: str = "lattice"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ap", float(self.ap))
        for name in ("lattice", "na", "nb", "nc"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "angles", tuple(float(a) for a in self.angles))
        object.__setattr__(self, "translations", tuple(int(t) for t in self.translations))
        if not 0 <= self.lattice < len(LATTICE_TYPES) or min(self.na, self.nb, self.nc) < 1:
            raise InvalidStructure(f"bad instructions: lattice {self.lattice}, cell {self.na}x{self.nb}x{self.nc}")
        if len(self.angles) != 3 or self.angles[2] not in LAYER_OFFSETS:
            raise InvalidStructure(f"bad angles {self.angles}: need three, with gamma 90 or 120")
        n_offsets = len(LAYER_OFFSETS[self.angles[2]])
        if len(self.translations) != self.nc or not all(0 <= t < n_offsets for t in self.translations):
            raise InvalidStructure(f"bad translations {self.translations} for nc={self.nc}, gamma={self.angles[2]}")
        if self.offsets not in OFFSET_STYLES:
            raise InvalidStructure(f"bad offset style {self.offsets!r}: use one of {OFFSET_STYLES}")
        if self.angles[2] == 90.0:
            object.__setattr__(self, "offsets", "lattice")

    @property
    def n_sub(self) -> int:
        return self.na * self.nb * self.nc


@dataclass(frozen=True)
class Genome:
    """A structure as FUSE stores it: atomic numbers in blocks of four sub-module sites, and instructions."""

    string: tuple[int, ...]
    instructions: Instructions

    def __post_init__(self) -> None:
        object.__setattr__(self, "string", tuple(map(int, self.string)))
        if len(self.string) != 4 * self.instructions.n_sub:
            raise InvalidStructure(
                f"string of length {len(self.string)} does not fill {self.instructions.n_sub} sub-modules"
            )

    @property
    def n_sub(self) -> int:
        return len(self.string) // 4

    @property
    def n_atoms(self) -> int:
        return sum(1 for v in self.string if v != VACANCY)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for storage and resume."""
        ins = asdict(self.instructions)
        ins["angles"], ins["translations"] = list(ins["angles"]), list(ins["translations"])
        return {"string": list(self.string), "instructions": ins}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genome:
        return cls(tuple(data["string"]), Instructions(**data["instructions"]))


@lru_cache(maxsize=None)
def lattice_solutions(lattice: int, max_ax: int = MAX_AX) -> Mapping[int, tuple[tuple[int, int, int], ...]]:
    """Cell shapes (na, nb, nc) per sub-module count N for one lattice type (4 and 5 share a table)."""
    axis, even = range(1, max_ax + 1), range(2, max_ax + 1, 2)
    shapes: Any
    if lattice == 0:
        shapes = ((n, n, 2 * n) for n in axis)
    elif lattice == 1:
        shapes = ((i, i, j) for i in axis for j in even)
    elif lattice == 2:
        shapes = ((i, i, j) for i in axis for j in range(2, max_ax + 1))
    elif lattice == 3:
        shapes = ((i, j, k) for i in axis for j in axis for k in even)
    elif lattice in (4, 5):
        shapes = itertools.product(axis, axis, axis)
    else:
        raise ValueError(f"lattice type must be 0..5, got {lattice}")
    return _group(shapes)


def _group(shapes: Any) -> Mapping[int, tuple[tuple[int, int, int], ...]]:
    table: dict[int, list[tuple[int, int, int]]] = {}
    for shape in shapes:
        table.setdefault(shape[0] * shape[1] * shape[2], []).append(shape)
    return MappingProxyType({n: tuple(s) for n, s in table.items()})


@lru_cache(maxsize=None)
def _sizes_up_to(max_sub: int) -> tuple[tuple[int, ...], ...]:
    """Per lattice type, its sub-module counts up to ``max_sub`` in ascending order (drawn from by index)."""
    return tuple(tuple(n for n in sorted(lattice_solutions(t)) if n <= max_sub) for t in range(len(LATTICE_TYPES)))


def possible_lattices(n_sub: int) -> list[int]:
    """Lattice types whose solution table has a shape with ``n_sub`` sub-modules."""
    return [t for t in range(len(LATTICE_TYPES)) if n_sub in lattice_solutions(t)]


def offset_styles(fuse_compatible: bool | Iterable[str] = False,
                  allowed: Iterable[str] = ("cartesian",)) -> tuple[str, ...]:
    """The γ = 120 offset styles random instructions draw from: ``allowed``, or FUSE's alone under
    ``cartesian_offsets``."""
    return ("cartesian",) if "cartesian_offsets" in quirk_set(fuse_compatible) else tuple(allowed)


def random_instructions(n_sub: int, ap: float, rng: np.random.Generator, lattice: int | None = None,
                        styles: tuple[str, ...] = ("cartesian",)) -> Instructions:
    """Random cell shape, angles and layer offsets for ``n_sub`` sub-modules (``create_random_instructions``).

    ``lattice=None`` draws the type uniformly among those possible for ``n_sub`` (move 3, and FUSE's re-draw).
    A γ = 120 cell draws its offset style uniformly from ``styles``.
    """
    if lattice is None:
        options = possible_lattices(n_sub)
        if not options:
            raise ValueError(f"no cell shape with {n_sub} sub-modules (each axis at most {MAX_AX})")
        lattice = options[rng.integers(len(options))]
    shapes = lattice_solutions(lattice).get(n_sub)
    if not shapes:
        raise ValueError(f"lattice type {lattice} has no cell shape with {n_sub} sub-modules")
    na, nb, nc = shapes[rng.integers(len(shapes))]
    if lattice in (0, 1, 3):
        angles = (90.0, 90.0, 90.0)
    elif lattice in (2, 4):
        angles = (90.0, 90.0, 120.0)
    else:
        gamma = float(rng.choice([90.0, 120.0])) if nc % 2 == 0 else 120.0
        angles = (float(rng.choice(TRICLINIC_ANGLES)), float(rng.choice(TRICLINIC_ANGLES)), gamma)
    translations = _random_translations(nc, angles[2], rng)
    style = styles[rng.integers(len(styles))] if angles[2] == 120.0 and len(styles) > 1 else styles[0]
    return Instructions(ap, lattice, na, nb, nc, angles, translations, style)


def _random_translations(nc: int, gamma: float, rng: np.random.Generator) -> tuple[int, ...]:
    """Alternating offsets for γ = 90; ABC-like stacking for γ = 120, consistent across the periodic boundary."""
    if nc == 1:
        return (0,)
    if gamma == 90.0:
        return tuple(x % 2 for x in range(nc))
    codes = [0]
    for _ in range(nc - 2):
        options = [t for t in (0, 1, 2) if t != codes[-1]]
        codes.append(options[rng.integers(len(options))])
    options = [t for t in (0, 1, 2) if t not in (codes[0], codes[-1])]
    codes.append(options[rng.integers(len(options))])
    return tuple(codes)


def random_genome(composition: Composition, max_atoms: int, rng: np.random.Generator, *, max_fus: int | None = None,
                  target_fus: int | None = None, vac_ratio: float = 4, ap: float | None = None,
                  fuse_compatible: bool | Iterable[str] = False, styles: Iterable[str] = ("cartesian",),
                  overflow_fails: bool = False) -> Genome:
    """Random genome as ``create_random_string`` + ``create_random_instructions`` build it (fuse.md §1.6).

    ``max_fus`` (default: as many as fit in ``max_atoms``) sets the largest sub-module count; the default mode
    also caps the formula-unit count at it and keeps the lattice type the size was drawn for, whereas FUSE's
    quirks ``uncapped_fus`` and ``lattice_redraw`` leave the count uncapped and re-draw the type. ``target_fus``
    asks for exactly that many formula units (FUSE 1.06). ``ap`` defaults to ``composition.ap()``; ``styles`` are
    the γ = 120 offset genes drawn (``offset_styles``). ``overflow_fails`` makes a draw with more cations than
    sub-modules raise InvalidMove instead of drawing again (FUSE 1.04's moves 6 and 7 fail there, an IndexError
    it catches, and draw another move).
    """
    quirks = quirk_set(fuse_compatible)
    apf = composition.atoms_per_fu
    max_fus = composition.max_fus(max_atoms) if max_fus is None else int(max_fus)
    if max_fus < 1:
        raise CompositionError(f"max_fus must be at least 1, got {max_fus}")
    if target_fus is not None and not 1 <= target_fus <= max_fus:
        raise CompositionError(f"target_fus={target_fus} is outside 1..max_fus={max_fus}")
    max_sub = math.floor(max_fus * apf * (1 + vac_ratio) / 4)
    ap = composition.ap() if ap is None else ap
    cations = set(composition.cations)
    cations_per_fu = sum(z in cations for z in composition.fu)
    sizes_of = _sizes_up_to(max_sub)
    for _ in range(_MAX_DRAWS):
        lattice = int(rng.integers(len(LATTICE_TYPES)))
        sizes = sizes_of[lattice]
        if not sizes:
            continue
        n_sub = sizes[rng.integers(len(sizes))]
        if 4 * n_sub < apf:
            continue
        top = 4 * n_sub // apf if "uncapped_fus" in quirks else min(4 * n_sub // apf, max_fus)
        fus = int(rng.integers(1, top + 1))
        if target_fus is not None and fus != target_fus:
            continue
        string = _fill_string(composition, fus, n_sub, rng)
        if string is None and overflow_fails and cations_per_fu * fus > n_sub:
            raise InvalidMove(f"{cations_per_fu * fus} cations for {n_sub} sub-modules (FUSE 1.04 draws another move)")
        if string is None:
            continue
        instructions = random_instructions(n_sub, ap, rng, lattice=None if "lattice_redraw" in quirks else lattice,
                                           styles=offset_styles(quirks, styles))
        return Genome(string, instructions)
    raise CompositionError(
        f"no random structure of {composition.label} with max_fus={max_fus}, target_fus={target_fus} "
        f"after {_MAX_DRAWS} draws"
    )


def _fill_string(composition: Composition, fus: int, n_sub: int, rng: np.random.Generator) -> list[int] | None:
    """Place ``fus`` formula units on ``n_sub`` sub-modules: cations on A sites, anions on B sites (ionic).

    Returns None where FUSE's builder fails and is retried: more cations than A sites, or more anions than B sites.
    """
    atoms = composition.fu * fus
    n_vac = 4 * n_sub - len(atoms)
    if composition.system_type == "neutral":
        return rng.permutation(atoms + [VACANCY] * n_vac).tolist()
    cation_set = set(composition.cations)
    a_sites = [z for z in atoms if z in cation_set]
    b_sites = [z for z in atoms if z not in cation_set]
    a_vacancies = n_sub - len(a_sites)
    if a_vacancies < 0 or a_vacancies > n_vac:
        return None
    a_sites = rng.permutation(a_sites + [VACANCY] * a_vacancies)
    b_sites = rng.permutation(b_sites + [VACANCY] * (n_vac - a_vacancies)).reshape(n_sub, 3)
    return np.column_stack([a_sites, b_sites]).reshape(-1).tolist()


def block_grid(genome: Genome) -> np.ndarray:
    """The string as an array (nc, na, nb, 4): sub-module (i, j) of layer x, in assembly order.

    FUSE consumes blocks from the end of the string, so within each layer the block order is reversed.
    """
    ins = genome.instructions
    blocks = np.asarray(genome.string, dtype=int).reshape(ins.nc, ins.na * ins.nb, 4)[:, ::-1, :]
    return blocks.reshape(ins.nc, ins.na, ins.nb, 4)


def from_block_grid(grid: np.ndarray, instructions: Instructions) -> Genome:
    """Inverse of ``block_grid``; ``instructions`` must describe the grid's shape."""
    nc, na, nb, _ = grid.shape
    string = np.asarray(grid).reshape(nc, na * nb, 4)[:, ::-1, :].reshape(-1)
    return Genome(tuple(string), instructions)


def submodule_cell(ap: float, angles: tuple[float, float, float]) -> np.ndarray:
    """Sub-module cell (ap, ap, ap/2, α, β, γ) in ASE's convention (a1 along x, a2 in the xy-plane).

    Unlike ``ase.geometry.cellpar_to_cell``, impossible angle triples give a NaN c-vector instead of raising,
    so the structure check rejects them the way FUSE does.
    """
    alpha, beta, gamma = angles
    cos_a, cos_b = (0.0 if a == 90.0 else math.cos(math.radians(a)) for a in (alpha, beta))
    cos_g, sin_g = (0.0, 1.0) if gamma == 90.0 else (math.cos(math.radians(gamma)), math.sin(math.radians(gamma)))
    cx = cos_b
    cy = (cos_a - cos_b * cos_g) / sin_g
    cz_sq = 1.0 - cx * cx - cy * cy
    cz = math.sqrt(cz_sq) if cz_sq >= 0 else math.nan
    return np.array([[ap, 0.0, 0.0], [ap * cos_g, ap * sin_g, 0.0], [ap / 2 * cx, ap / 2 * cy, ap / 2 * cz]])


def assemble(genome: Genome, fuse_compatible: bool | Iterable[str] = False) -> Atoms:
    """Build the unrelaxed grid structure (fuse.md §1.4); atoms come layer by layer, block by block, site by site.

    Layer x sits at x·a3 plus its offset: fractions of a1, a2, or (``offsets="cartesian"``, and always under the
    ``cartesian_offsets`` quirk) the same numbers times ap as a Cartesian shift; they differ only for γ = 120.
    """
    positions, cell = site_positions(genome.instructions, fuse_compatible)
    grid = block_grid(genome)
    filled = grid != VACANCY
    return Atoms(numbers=grid[filled], positions=positions[filled], cell=cell, pbc=True)


def site_positions(ins: Instructions, fuse_compatible: bool | Iterable[str] = False) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian position of every grid site, shaped like ``block_grid`` (nc, na, nb, 4, 3), and the cell."""
    sub = submodule_cell(ins.ap, ins.angles)
    fractions = np.array([LAYER_OFFSETS[ins.angles[2]][t] for t in ins.translations])
    if ins.offsets == "cartesian" or "cartesian_offsets" in quirk_set(fuse_compatible):
        offsets = np.column_stack([fractions * ins.ap, np.zeros(ins.nc)])
    else:
        offsets = fractions @ sub[:2]
    x, i, j = np.indices((ins.nc, ins.na, ins.nb))
    origins = (x[..., None] * sub[2] + offsets[x] + i[..., None] * sub[0] + j[..., None] * sub[1])
    return origins[..., None, :] + SITES @ sub, grid_cell(ins)


def grid_cell(ins: Instructions) -> np.ndarray:
    """The cell ``assemble`` gives these instructions, without placing a site: most random genomes fail the
    density check, which needs only this and ``grid_numbers``."""
    sub = submodule_cell(ins.ap, ins.angles)
    return np.array([ins.na * sub[0], ins.nb * sub[1], ins.nc * sub[2]])


def grid_numbers(genome: Genome) -> np.ndarray:
    """The atomic numbers of the assembled genome, in ``assemble``'s order."""
    grid = block_grid(genome)
    return grid[grid != VACANCY]
