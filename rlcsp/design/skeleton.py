"""Crystal skeletons: a lattice and sites with their species masked, plus the CrystalNN graph a filler walks.

A composition-filling agent (seed papers a-c) keeps the geometry of a known crystal and chooses the element of
every site, one site per step in breadth-first order over the CrystalNN bond graph, so that each choice sits
next to sites already filled. Any structure becomes a skeleton: a CIF file, an ASE ``Atoms``, a pymatgen
``Structure``, or a row of a CDVAE/MP-20 CSV (``material_id, cif, ...``).
"""
from __future__ import annotations

import csv
import io
import warnings
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

from rlcsp.exceptions import ConfigError


@dataclass(frozen=True)
class Skeleton:
    """Sites of a crystal without their species; ``species`` keeps the source's elements for reference only.

    ``edges`` is the CrystalNN multigraph as (source, target, image) rows: every bond appears in both
    directions, and a pair bonded through several periodic images appears once per image.
    """

    cell: np.ndarray  # (3, 3) rows are lattice vectors, Angstrom
    frac_coords: np.ndarray  # (n, 3)
    species: tuple[str, ...]
    edges: np.ndarray  # (E, 5) int: source, target, image a, b, c
    spacegroup: int
    name: str = "skeleton"

    @property
    def n_sites(self) -> int:
        return len(self.frac_coords)

    @property
    def cellpar(self) -> np.ndarray:
        """a, b, c (Angstrom) and alpha, beta, gamma (degrees)."""
        return Atoms(cell=self.cell).cell.cellpar()

    def edge_distances(self) -> np.ndarray:
        """Length of every edge with its periodic image, in Angstrom."""
        src, dst, image = self.edges[:, 0], self.edges[:, 1], self.edges[:, 2:]
        delta = (self.frac_coords[dst] + image - self.frac_coords[src]) @ self.cell
        return np.linalg.norm(delta, axis=1)

    def neighbours(self) -> list[list[int]]:
        """Distinct neighbours of each site, sorted, so BFS is deterministic."""
        out: list[set[int]] = [set() for _ in range(self.n_sites)]
        for s, t in self.edges[:, :2]:
            if s != t:
                out[s].add(int(t))
        return [sorted(n) for n in out]

    def bfs_order(self, root: int = 0) -> list[int]:
        """Breadth-first site order from ``root``; a disconnected graph continues from its lowest unvisited site."""
        if not 0 <= root < self.n_sites:
            raise ConfigError(f"BFS root {root} is not a site index (0..{self.n_sites - 1})")
        neighbours = self.neighbours()
        seen = [False] * self.n_sites
        order: list[int] = []
        for start in [root, *range(self.n_sites)]:
            if seen[start]:
                continue
            seen[start] = True
            queue = deque([start])
            while queue:
                site = queue.popleft()
                order.append(site)
                for nxt in neighbours[site]:
                    if not seen[nxt]:
                        seen[nxt] = True
                        queue.append(nxt)
        return order

    @cached_property
    def site_permutations(self) -> np.ndarray:
        """(operations, n) site maps of the skeleton's space group (spglib, sites told apart by the source's
        species): operation k sends site i onto site ``[k, i]``. Two fillings one of them maps onto each other are
        the same crystal, so they share a DFT gap and count as one design."""
        import spglib

        numbers = np.unique(self.species, return_inverse=True)[1]
        ops = spglib.get_symmetry((self.cell, self.frac_coords, numbers), symprec=1e-2) or {}
        maps = [np.arange(self.n_sites)]  # the identity, also where spglib finds nothing
        for rotation, translation in zip(ops.get("rotations", ()), ops.get("translations", ())):
            moved = self.frac_coords @ rotation.T + translation
            delta = moved[:, None, :] - self.frac_coords[None, :, :]
            distance = np.linalg.norm((delta - np.round(delta)) @ self.cell, axis=2)
            image = distance.argmin(axis=1)
            if distance[np.arange(self.n_sites), image].max() < 0.05 and len(set(image)) == self.n_sites:
                maps.append(image)
        return np.unique(np.array(maps, dtype=np.int64), axis=0)

    def canonical(self, species: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The one filling that stands for all fillings symmetry-equivalent to ``species`` (the least in order)."""
        species = np.asarray(species)
        images = np.empty((len(self.site_permutations), self.n_sites), dtype=species.dtype)
        images[np.arange(len(images))[:, None], self.site_permutations] = species
        return min(tuple(str(s) for s in row) for row in images)

    def atoms(self, species: list[str] | tuple[str, ...]) -> Atoms:
        """The filled crystal: ``species[i]`` on site i."""
        if len(species) != self.n_sites:
            raise ConfigError(f"{len(species)} species for {self.n_sites} sites")
        return Atoms(list(species), cell=self.cell, scaled_positions=self.frac_coords, pbc=True)


def _structure_from_cif_text(text: str, origin: str):
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(io.StringIO(text), occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False)
    except Exception as err:  # pymatgen raises ValueError, KeyError, IndexError... for broken CIFs
        raise ConfigError(f"cannot read a crystal structure from {origin}: {type(err).__name__}: {err}") from None
    if not structures:
        raise ConfigError(f"cannot read a crystal structure from {origin}: no structure in the CIF")
    return structures[0]


def read_csv_row(path: str | Path, row: int | str) -> Mapping[str, Any]:
    """One row of a CDVAE/MP-20 CSV, by position (int) or ``material_id`` (str)."""
    with open(path, newline="") as handle:
        for i, record in enumerate(csv.DictReader(handle)):
            if (isinstance(row, int) and i == row) or (isinstance(row, str) and record.get("material_id") == row):
                return record
    raise ConfigError(f"{path} has no row {row!r}")


def to_structure(source: Any, origin: str | None = None):
    """A pymatgen Structure from a CIF path, CIF text, ASE Atoms, pymatgen Structure or a CSV row mapping."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    if isinstance(source, Structure):
        structure = source
    elif isinstance(source, Atoms):
        structure = AseAtomsAdaptor.get_structure(source)
    elif isinstance(source, Mapping):
        if "cif" not in source:
            raise ConfigError(f"a CSV row needs a 'cif' column (CDVAE/MP-20 format); got {sorted(source)}")
        structure = _structure_from_cif_text(source["cif"], origin or f"CSV row {source.get('material_id', '?')}")
    elif isinstance(source, (str, Path)) and Path(source).is_file():
        structure = _structure_from_cif_text(Path(source).read_text(errors="replace"), str(source))
    elif isinstance(source, str) and "_cell_length_a" in source:
        structure = _structure_from_cif_text(source, origin or "CIF text")
    elif isinstance(source, (str, Path)) and "\n" not in str(source):
        raise ConfigError(f"no structure file {source} (looked in {Path.cwd()})")
    else:
        raise ConfigError(f"cannot make a skeleton from {type(source).__name__} {str(source)[:80]!r}: give a CIF "
                          "file, ASE Atoms, a pymatgen Structure or a CSV row with a 'cif' column")
    if not structure.is_ordered:
        partial = sorted({str(site.species) for site in structure if not site.is_ordered})
        raise ConfigError(f"{origin or 'the structure'} has partially occupied sites ({', '.join(partial)}); a "
                          "skeleton needs one species per site")
    if len(structure) == 0:
        raise ConfigError(f"{origin or 'the structure'} has no sites")
    return structure


def crystalnn_edges(structure) -> np.ndarray:
    """CrystalNN bonds of every site (both directions, one row per periodic image), as in paper a's graphs.

    CrystalNN's neighbour lists are not symmetric (a site may list a neighbour that does not list it back), so
    each bond is stored in both directions, like pymatgen's undirected StructureGraph.
    """
    from pymatgen.analysis.local_env import CrystalNN

    cnn = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(structure)):
            for info in cnn.get_nn_info(structure, i):
                image = [int(round(v)) for v in info["image"]]
                rows.append((i, info["site_index"], *image))
                rows.append((info["site_index"], i, *(-v for v in image)))
    return np.array(sorted(set(rows)), dtype=np.int64).reshape(-1, 5)


def make_skeleton(source: Any, name: str | None = None, origin: str | None = None) -> Skeleton:
    """Any structure (see :func:`to_structure`) as a :class:`Skeleton` with its CrystalNN multigraph."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if isinstance(source, Skeleton):
        return source
    structure = to_structure(source, origin)
    try:
        spacegroup = SpacegroupAnalyzer(structure, symprec=0.01).get_space_group_number()
    except Exception:  # spglib gives up on badly distorted cells; P1 is then the honest answer
        spacegroup = 1
    return Skeleton(cell=np.array(structure.lattice.matrix, dtype=float),
                    frac_coords=np.array(structure.frac_coords, dtype=float),
                    species=tuple(site.specie.symbol for site in structure),
                    edges=crystalnn_edges(structure), spacegroup=int(spacegroup),
                    name=name or structure.composition.reduced_formula)
