"""GULP's rigid-ion Buckingham + Ewald model in PyTorch, for batches of periodic cells of different sizes.

The model is fuse.md §6.2 exactly: Ewald Coulomb (k_e = 14.3997584 eV·Å), A·exp(−r/ρ) for rmin ≤ r ≤ rmax, and
−C/r⁶ Ewald-summed over the whole lattice (GULP's ``c6``). Atoms of all structures are concatenated (TorchSim's
layout: no padding, a ``system`` index per atom), so one tensor program evaluates thousands of cells.

Why our own code rather than a library: torch-pme has 1/r⁶ Ewald but cannot batch cells of different shapes;
nvalchemi-toolkit-ops batches Ewald Coulomb but has neither 1/r⁶ Ewald nor Buckingham, and compiles Warp kernels
on first use, which the offline GPU machine cannot fetch. The C6 matrix here is not geometric (Sr–Sr is 0, O–O
175), so its reciprocal sum uses one structure factor per species: ΣΣ C_ab S_a S_b*, exact for any matrix.

Pairs are stored once (i < j, or i = j with a positive image shift) as integer image shifts found within
``cutoff + skin``; distances are recomputed from the current positions and cell on every call, so a relaxer
rebuilds the list only when an atom or the cell has moved by more than the skin allows. Forces and the strain
derivative come from one autograd pass through positions and a symmetric strain per system.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rlcsp.calculators.library import GULP_COULOMB, Library, load_library
from rlcsp.calculators.torch_linalg import det3, inv3, matmul3, segment_ranges, vecmat
from rlcsp.calculators.torch_lists import boxes, positive, runs, segments
from rlcsp.calculators.torch_slots import inert_rows, padded
from rlcsp.exceptions import CalculatorFailed, InvalidStructure, LibraryError


@dataclass
class Batch:
    """Concatenated structures: positions [N,3] (Å), cells [S,3,3] (rows are lattice vectors), per-atom indices."""

    positions: torch.Tensor
    cells: torch.Tensor
    species: torch.Tensor  # [N] index into the model's species
    system: torch.Tensor  # [N] index of each atom's structure
    counts: torch.Tensor  # [S] atoms per structure

    @property
    def n_systems(self) -> int:
        return int(self.cells.shape[0])


@dataclass
class Neighbours:
    """Pairs (i, j, integer image shift) within cutoff + skin, plus the Ewald k-vectors as integer triples."""

    i: torch.Tensor
    j: torch.Tensor
    shift: torch.Tensor  # [P,3] float, in lattice vectors
    pair_system: torch.Tensor
    m: torch.Tensor  # [K,3] float: k = 2π m · H⁻ᵀ, half space (the k and −k terms are folded)
    k_system: torch.Tensor
    ak_atom: torch.Tensor  # atom–k products inside each structure
    ak_k: torch.Tensor

    def remap(self, atom_map: torch.Tensor, system_map: torch.Tensor) -> Neighbours:
        """The same lists after structures were dropped (map −1) or renumbered, e.g. when a batch is refilled."""
        # one nonzero per mask, not one per masked tensor: each is a host synchronisation on a GPU
        keep_p = torch.nonzero(system_map[self.pair_system] >= 0).squeeze(1)
        keep_k = system_map[self.k_system] >= 0
        k_idx = torch.nonzero(keep_k).squeeze(1)
        k_map = torch.full_like(self.k_system, -1)
        k_map[k_idx] = torch.arange(len(k_idx), device=k_map.device)
        keep_ak = torch.nonzero(keep_k[self.ak_k]).squeeze(1)
        return Neighbours(atom_map[self.i[keep_p]], atom_map[self.j[keep_p]], self.shift[keep_p],
                          system_map[self.pair_system[keep_p]], self.m[k_idx], system_map[self.k_system[k_idx]],
                          atom_map[self.ak_atom[keep_ak]], k_map[self.ak_k[keep_ak]])

    def join(self, other: Neighbours) -> Neighbours:
        """Both lists in one; ``other`` must already use the joint atom and structure numbering."""
        cat = torch.cat
        return Neighbours(cat([self.i, other.i]), cat([self.j, other.j]), cat([self.shift, other.shift]),
                          cat([self.pair_system, other.pair_system]), cat([self.m, other.m]),
                          cat([self.k_system, other.k_system]), cat([self.ak_atom, other.ak_atom]),
                          cat([self.ak_k, other.ak_k + len(self.m)]))


@dataclass
class Evaluation:
    """Per-structure energies (eV), per-atom forces (eV/Å), strain derivatives dE/dε (eV) and closest pairs."""

    energy: torch.Tensor
    forces: torch.Tensor | None
    virial: torch.Tensor | None
    min_distance: torch.Tensor

    def stress(self, cells: torch.Tensor) -> torch.Tensor:
        """ASE's stress, (1/V) dE/dε, as [S,3,3] in eV/Å³."""
        return self.virial / det3(cells).abs()[:, None, None]


def pair_distances(r: torch.Tensor, cells: torch.Tensor, i: torch.Tensor, j: torch.Tensor, shift: torch.Tensor,
                   pair_system: torch.Tensor) -> torch.Tensor:
    """|r_j − r_i + shift·H| of every listed pair."""
    d = r[j] - r[i] + vecmat(shift, cells[pair_system])
    return torch.sqrt((d * d).sum(-1))


class TorchBuckingham:
    """The exact GULP model for one library, evaluated on batches.

    ``accuracy`` sets the Ewald splitting so that both the real-space and reciprocal-space tails are below it
    relative to their leading terms (1e-10 by default, as the LAMMPS engine uses); ``inner='gulp'`` applies GULP's
    cut of the exponential below rmin, ``'keep'`` keeps it there (what LAMMPS' minimiser sees): energies of
    sane structures are identical, only overlapping atoms differ. A ``cutoff`` below rmax (real-space sums and
    the exponential; 12 Å by default) is an approximation for minimisers only, as LAMMPS' ``min_cutoff``.
    ``compile=True`` runs the energy through ``torch.compile`` (the batch's sizes dynamic, so a changing pair count
    does not recompile): the pair and k-vector terms and their gradients fuse into a few kernels instead of dozens of
    elementwise passes over millions of pairs; it pays on a GPU, where evaluation was half of a relaxation step.
    """

    def __init__(self, library: str | Path | Library | None = None, accuracy: float = 1e-10,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64, inner: str = "gulp",
                 skin: float = 1.5, cutoff: float | None = None, compile: bool = False):
        if inner not in ("gulp", "keep"):
            raise ValueError(f"inner must be 'gulp' or 'keep', not {inner!r}")
        self.library = library if isinstance(library, Library) else load_library(library)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise CalculatorFailed(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use 'cpu'")
        self.dtype = dtype
        self.inner = inner
        self.skin = skin
        self.elements = sorted(el for el in self.library.elements if self._rigid(el))
        self.index = {el: k for k, el in enumerate(self.elements)}
        n = len(self.elements)
        tables = np.zeros((5, n, n))
        tables[1] = 1.0  # rho: any positive value where A = 0
        tables[3] = np.inf  # rmin: no exponential at all between species without a term
        for a in self.elements:
            for b in self.elements:
                term = self.library.pair(a, b)
                if term is not None:
                    tables[:, self.index[a], self.index[b]] = (term.A, term.rho, term.C, term.rmin, term.rmax)
        as_t = lambda x: torch.as_tensor(x, dtype=dtype, device=self.device)  # noqa: E731
        self.A, self.rho, self.C, self.rmin, self.rmax = (as_t(t) for t in tables)
        self.charges = as_t([self.library.charge(el) for el in self.elements])
        self.cutoff = cutoff or float(max((t.rmax for t in self.library.buckingham), default=12.0))
        x = math.sqrt(-math.log(accuracy))
        self.g = x / self.cutoff  # Ewald splitting (1/Å): erfc(g·rc) ≈ accuracy
        self.kmax = 2.0 * self.g * x
        self._compiled = torch.compile(self._model_terms) if compile else None

    @property
    def compiled(self) -> bool:
        """Whether evaluations of two or more structures run through torch.compile (benches record it)."""
        return self._compiled is not None

    def _rigid(self, element: str) -> bool:
        try:
            self.library.charge(element)
        except LibraryError:
            return False  # a shell-model species; batch() names the library's reason if a structure uses it
        return True

    # -- structures in and out -----------------------------------------------------------------------

    def batch(self, structures: list[Atoms]) -> Batch:
        for atoms in structures:
            unknown = set(atoms.get_chemical_symbols()) - set(self.elements)
            for element in sorted(unknown & self.library.elements):
                self.library.charge(element)  # raises the library's own LibraryError
            if unknown:
                raise InvalidStructure(f"no charge or potential for {sorted(unknown)} in {self.library.path}")
            if len(atoms) == 0 or abs(np.linalg.det(atoms.cell.array)) < 1e-6:
                raise InvalidStructure("empty structure or singular cell")
        t = lambda x, dt=self.dtype: torch.as_tensor(np.asarray(x), dtype=dt, device=self.device)  # noqa: E731
        species = np.concatenate([[self.index[s] for s in a.get_chemical_symbols()] for a in structures])
        counts = np.array([len(a) for a in structures])
        return Batch(t(np.concatenate([a.positions for a in structures])),
                     t(np.stack([a.cell.array for a in structures])), t(species, torch.long),
                     t(np.repeat(np.arange(len(structures)), counts), torch.long), t(counts, torch.long))

    # -- neighbour list and k-vectors ----------------------------------------------------------------

    def image_ranges(self, cells: torch.Tensor) -> torch.Tensor:
        """Images [S,3] each way that a pair search within cutoff + skin needs, from the cells' plane spacings;
        the nearest image is taken first, so |Δf| ≤ 1/2 and half a spacing is added."""
        return torch.floor((self.cutoff + self.skin) * torch.linalg.norm(inv3(cells), dim=1) + 0.5).long()

    @torch.no_grad()
    def neighbours(self, batch: Batch, chunk: int | None = None, spare: float = 0.0,
                   products: bool = True) -> Neighbours:
        """Pairs within cutoff + skin over every image each structure needs, and its Ewald k-vectors; with
        ``spare`` > 0, each structure's ranges have room for that many more (:mod:`torch_slots`). Without
        ``products`` (and room), the atom–k products are left empty: :meth:`completed` adds them.

        Image ranges follow from each cell's plane spacings, so cutoffs longer than the cell work; the
        fractional difference is first rounded to the nearest image, so unwrapped positions work too.
        """
        counts = batch.counts.cpu().numpy()  # sizes on the host once: each int() of a device tensor is a sync
        reach = self.image_ranges(batch.cells).cpu().numpy()
        chunk = chunk or (1 << 25 if self.device.type == "cuda" else 1 << 22)
        i, j, shift, s_idx = self._pairs(batch, counts, reach, chunk)
        m, k_system = self._kvectors(batch.cells)
        none = torch.zeros(0, dtype=torch.long, device=self.device)
        listed = Neighbours(i, j, shift, s_idx, m, k_system, none, none)
        return self.completed(batch, listed, spare) if products or spare > 0 else listed

    def completed(self, batch: Batch, listed: Neighbours, spare: float = 0.0) -> Neighbours:
        """Lists from :meth:`neighbours` without products, given ``spare`` room and their atom–k products."""
        i, j, shift, s_idx = listed.i, listed.j, listed.shift, listed.pair_system
        m, k_system, S = listed.m, listed.k_system, batch.n_systems
        if spare > 0:
            first = segment_ranges(batch.counts)[:-1]
            s_idx, (i, j, shift) = padded(s_idx, S, spare, [i, j, shift], [first, first, inert_rows(S, shift)])
            k_system, (m,) = padded(k_system, S, spare, [m], [inert_rows(S, m)])
        # every atom of a structure against every k-vector of the same structure
        k_counts = torch.bincount(k_system, minlength=S)
        ptr, k_ptr = segment_ranges(batch.counts), segment_ranges(k_counts)
        ak_sys, local = segments(torch.stack([batch.counts, k_counts]).cpu().numpy().prod(0), self.device)  # one sync
        n_k = k_counts[ak_sys]
        ak_atom = ptr[:-1][ak_sys] + torch.div(local, n_k, rounding_mode="floor")
        ak_k = k_ptr[:-1][ak_sys] + local % n_k
        return Neighbours(i, j, shift, s_idx, m, k_system, ak_atom, ak_k)

    def _pairs(self, batch: Batch, counts: np.ndarray, reach: np.ndarray, chunk: int):
        """Every pair a ≤ b of each structure against every image of its own box, without padding.

        A pair's nearest-image vector and an image's lattice vector are computed once each; the candidates (pair,
        image) are enumerated flat, structure after structure, in chunks of about ``chunk``, so a structure of few
        atoms or images costs what it needs and not the batch's largest. Kept: distance within cutoff + skin,
        and a self-image only with a positive shift (one of each ±pair).
        """
        dev, rc = self.device, self.cutoff + self.skin
        on_dev = lambda x: torch.as_tensor(x, device=dev)  # noqa: E731
        n_tri, n_img = counts * (counts + 1) // 2, (2 * reach + 1).prod(1)
        tri_ptr, img_ptr = np.cumsum(n_tri) - n_tri, np.cumsum(n_img) - n_img
        # pair level: (a, b) from the row-major index p of the upper triangle with its diagonal
        pair_sys, p = segments(n_tri, dev)
        n = batch.counts[pair_sys]
        first = lambda a: a * n - a * (a - 1) // 2  # noqa: E731  (index of row a's first entry)
        a = torch.floor((2 * n + 1 - torch.sqrt(((2 * n + 1) ** 2 - 8 * p).double())) / 2).long()
        a = a - (p < first(a)).long() + (p >= first(a + 1)).long()  # the square root's rounding, corrected
        b = a + p - first(a)
        ptr = segment_ranges(batch.counts)
        a, b = ptr[pair_sys] + a, ptr[pair_sys] + b
        cells = batch.cells
        frac = vecmat(batch.positions, inv3(cells)[batch.system])
        base = -torch.round(frac[b] - frac[a])  # the image of b nearest to a
        d = batch.positions[b] - batch.positions[a] + vecmat(base, cells[pair_sys])
        # image level: each structure's own box, [-reach, reach] along each lattice vector
        img, img_sys = boxes(reach, dev, self.dtype)
        t = vecmat(img, cells[img_sys])
        upper = positive(img)
        cost = n_tri * n_img
        out = {key: [] for key in ("i", "j", "shift", "s")}
        for lo, hi in runs(cost, chunk):
            seg, local = segments(cost[lo:hi], dev)
            sys = seg + lo
            per = on_dev(n_img)[sys]
            pp = on_dev(tri_ptr)[sys] + torch.div(local, per, rounding_mode="floor")
            qq = on_dev(img_ptr)[sys] + local % per
            v = d[pp] + t[qq]
            keep = torch.nonzero(((v * v).sum(-1) <= rc * rc) & ((a[pp] != b[pp]) | upper[qq])).squeeze(1)
            pp, qq = pp[keep], qq[keep]
            out["i"].append(a[pp])
            out["j"].append(b[pp])
            out["shift"].append(base[pp] + img[qq])
            out["s"].append(pair_sys[pp])
        if not out["i"]:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            return empty, empty, torch.zeros((0, 3), dtype=self.dtype, device=dev), empty
        return tuple(torch.cat(out[key]) for key in ("i", "j", "shift", "s"))

    def _kvectors(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer triples m > 0 (lexicographically) with |k| ≤ kmax (+ the skin's margin) for every cell.

        |m_a| ≤ kmax·|a_a| / 2π bounds each cell's own box of triples; the boxes are enumerated flat, structure
        after structure, so one long cell does not size the grid of the others, and come out grouped by structure,
        as the atom–k products expect.
        """
        recip = 2.0 * math.pi * inv3(cells).transpose(1, 2)  # rows b_i
        kcut = self.kmax * (1.0 + self.skin / self.cutoff)
        reach = torch.ceil(kcut * torch.linalg.norm(cells, dim=2) / (2.0 * math.pi)).long()
        m, system = boxes(reach.cpu().numpy(), self.device, self.dtype)  # box sizes on the host: one sync
        k = vecmat(m, recip[system])
        keep = torch.nonzero(((k * k).sum(-1) <= kcut ** 2) & positive(m)).squeeze(1)
        return m[keep], system[keep]

    # -- energy ------------------------------------------------------------------------------------

    def evaluate(self, batch: Batch, nbrs: Neighbours, forces: bool = True) -> Evaluation:
        """Energies per structure, and forces and dE/dε by autograd when asked."""
        S = batch.n_systems
        strain = torch.zeros((S, 3, 3), dtype=self.dtype, device=self.device, requires_grad=forces)
        positions = batch.positions.detach().requires_grad_(forces)
        with torch.enable_grad() if forces else torch.no_grad():
            deform = torch.eye(3, dtype=self.dtype, device=self.device) + 0.5 * (strain + strain.transpose(1, 2))
            r = vecmat(positions, deform[batch.system])
            cells = matmul3(batch.cells, deform)
            energy, dmin = self._energy(batch, nbrs, r, cells)
            if not forces:
                return Evaluation(energy.detach(), None, None, dmin)
            g_pos, g_strain = torch.autograd.grad(energy.sum(), (positions, strain))
        return Evaluation(energy.detach(), -g_pos, g_strain, dmin)

    @staticmethod
    def _distances(nbrs: Neighbours, r: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return pair_distances(r, cells, nbrs.i, nbrs.j, nbrs.shift, nbrs.pair_system)

    def _closest(self, dist: torch.Tensor, nbrs: Neighbours, n: int) -> torch.Tensor:
        dmin = torch.full((n,), float("inf"), dtype=self.dtype, device=self.device)
        return dmin.scatter_reduce(0, nbrs.pair_system, dist.detach(), "amin")

    @torch.no_grad()
    def closest(self, batch: Batch, nbrs: Neighbours) -> torch.Tensor:
        """Each structure's shortest interatomic distance [S] (inf beyond cutoff + skin), without the energy."""
        return self._closest(self._distances(nbrs, batch.positions, batch.cells), nbrs, batch.n_systems)

    @torch.no_grad()
    def inner_exponential(self, batch: Batch, nbrs: Neighbours) -> torch.Tensor:
        """Each structure's exponential from pairs inside GULP's inner cut [S]: what ``inner='keep'`` adds."""
        out = torch.zeros(batch.n_systems, dtype=self.dtype, device=self.device)
        if self.inner == "gulp":
            return out
        dist = self._distances(nbrs, batch.positions, batch.cells)
        si, sj = batch.species[nbrs.i], batch.species[nbrs.j]
        expo = torch.where(dist < self.rmin[si, sj], self.A[si, sj] * torch.exp(-dist / self.rho[si, sj]), 0.0)
        return out.index_add(0, nbrs.pair_system, expo)

    def _energy(self, batch: Batch, nbrs: Neighbours, r: torch.Tensor, cells: torch.Tensor):
        sized = (r, cells, batch.species, batch.system, nbrs.i, nbrs.j, nbrs.shift, nbrs.pair_system, nbrs.m,
                 nbrs.k_system, nbrs.ak_atom, nbrs.ak_k)  # their first dimension changes from call to call
        terms = self._model_terms
        if self._compiled is not None and min(len(t) for t in sized) > 1:
            # one graph for every batch: only the first dimensions vary; a lone structure (or a single pair or
            # k-vector) would be specialised to a graph of its own, so it runs eagerly instead
            for t in sized:
                torch._dynamo.mark_dynamic(t, 0)
            terms = self._compiled
        energy, dist = terms(*sized, self.charges, self.A, self.rho, self.C, self.rmin, self.rmax)
        return energy, self._closest(dist, nbrs, batch.n_systems)

    def _model_terms(self, r, cells, species, system, i, j, shift, pair_system, m, k_system, ak_atom, ak_k, charges,
                     A, rho, C, rmin, rmax) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies [S] and pair distances [P]: a function of tensors only, so that torch.compile can fuse it."""
        S, g, ke, rc, n_sp = cells.shape[0], self.g, GULP_COULOMB, self.cutoff, len(self.elements)
        zeros = torch.zeros(S, dtype=r.dtype, device=r.device)
        q = charges[species]
        si, sj = species[i], species[j]
        dist = pair_distances(r, cells, i, j, shift, pair_system)
        inside = dist <= rc
        safe = torch.where(inside, dist, torch.full_like(dist, rc))
        # real-space Coulomb and C6, and the exponential inside its window
        coul = ke * q[i] * q[j] * torch.erfc(g * safe) / safe
        a2 = (g * safe) ** 2
        c6 = -C[si, sj] * torch.exp(-a2) * (1.0 + a2 + 0.5 * a2 * a2) / safe ** 6
        lower = rmin[si, sj] if self.inner == "gulp" else torch.zeros_like(safe)
        window = inside & (safe >= lower) & (safe <= rmax[si, sj])
        expo = torch.where(window, A[si, sj] * torch.exp(-safe / rho[si, sj]), torch.zeros_like(safe))
        pair = torch.where(inside, coul + c6, torch.zeros_like(safe)) + expo
        energy = zeros.index_add(0, pair_system, pair)
        # reciprocal space: per-species structure factors, the k and -k terms folded (hence the factors 2)
        volume = det3(cells).abs()
        recip = 2.0 * math.pi * inv3(cells).transpose(1, 2)
        k = vecmat(m, recip[k_system])
        k2 = (k * k).sum(-1)
        phase = (k[ak_k] * r[ak_atom]).sum(-1)
        slot = ak_k * n_sp + species[ak_atom]
        K = k.shape[0]
        re = torch.zeros(K * n_sp, dtype=r.dtype, device=r.device).index_add(0, slot, torch.cos(phase))
        im = torch.zeros(K * n_sp, dtype=r.dtype, device=r.device).index_add(0, slot, torch.sin(phase))
        re, im = re.view(K, n_sp), im.view(K, n_sp)
        v_k = volume[k_system]
        sq_re, sq_im = (re * charges).sum(-1), (im * charges).sum(-1)
        coul_k = 2.0 * (2.0 * math.pi * ke / v_k) * torch.exp(-k2 / (4 * g * g)) / k2 * (sq_re ** 2 + sq_im ** 2)
        b = torch.sqrt(k2) / (2.0 * g)
        phi = (2.0 * math.pi ** 1.5 * g ** 3 / 3.0) * (math.sqrt(math.pi) * b ** 3 * torch.erfc(b)
                                                  + (0.5 - b * b) * torch.exp(-b * b))
        cs = (vecmat(re, C) * re).sum(-1) + (vecmat(im, C) * im).sum(-1)  # Σ_ab C_ab Re(S_a S_b*)
        c6_k = -2.0 * phi * cs / (2.0 * v_k)
        energy = energy.index_add(0, k_system, coul_k + c6_k)
        # k = 0 of the C6 sum, and the self terms of both sums
        n_species = torch.zeros((S, n_sp), dtype=r.dtype, device=r.device).index_put_(
            (system, species), torch.ones_like(q), accumulate=True)
        c6_0 = -(math.pi ** 1.5 * g ** 3 / 3.0) * (vecmat(n_species, C) * n_species).sum(-1) / (2.0 * volume)
        self_terms = (-ke * g / math.sqrt(math.pi) * zeros.index_add(0, system, q * q)
                      + g ** 6 / 12.0 * zeros.index_add(0, system, C[species, species]))
        return energy + c6_0 + self_terms, dist

    def energies(self, structures: list[Atoms]) -> np.ndarray:
        """Total energies (eV) of a list of structures, one batch."""
        batch = self.batch(structures)
        return self.evaluate(batch, self.neighbours(batch), forces=False).energy.cpu().numpy()


class TorchBuckinghamCalculator(Calculator):
    """ASE calculator over :class:`TorchBuckingham` (one structure at a time; use the model for batches)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, library: str | Path | Library | None = None, device: str = "cpu", dtype: str = "float64",
                 accuracy: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        self.model = TorchBuckingham(library, accuracy=accuracy, device=device, dtype=getattr(torch, dtype))

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        batch = self.model.batch([self.atoms])
        ev = self.model.evaluate(batch, self.model.neighbours(batch))
        s = ev.stress(batch.cells)[0].detach().cpu().numpy()
        energy = float(ev.energy[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": ev.forces.detach().cpu().numpy(),
                        "stress": np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])}
