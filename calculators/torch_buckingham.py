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


def _chunks(order: np.ndarray, cost, limit: int):
    """``order`` cut into consecutive chunks whose ``cost(chunk)`` (padded size) stays under ``limit``."""
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or cost(order[start:end + 1]) > limit:
            yield order[start:end]
            start = end


def _positive(grid: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Integer triples lexicographically above zero: one of each ±pair."""
    return grid[..., 0] * 4096.0 * 4096.0 + grid[..., 1] * 4096.0 + grid[..., 2] > 0


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
    def neighbours(self, batch: Batch, chunk_pairs: int = 1 << 22) -> Neighbours:
        """Brute-force pairs within cutoff + skin over all needed images, structures in chunks.

        Image ranges follow from each cell's plane spacings, so cutoffs longer than the cell work; the
        fractional difference is first rounded to the nearest image, so unwrapped positions work too.
        """
        rc = self.cutoff + self.skin
        n_img = self.image_ranges(batch.cells)
        ptr = segment_ranges(batch.counts)
        frac = vecmat(batch.positions, inv3(batch.cells)[batch.system])
        out = {key: [] for key in ("i", "j", "shift", "s")}
        # sizes on the host once: each int() of a device tensor would be a synchronisation on a GPU
        counts, reach = batch.counts.cpu().numpy(), n_img.cpu().numpy()
        images = (2 * reach + 1).prod(1)
        order = np.argsort(-(counts ** 2) * images, kind="stable")  # similar structures share a chunk's padding
        padded = lambda chunk: len(chunk) * counts[chunk].max() ** 2 * images[chunk].max()  # noqa: E731
        for chunk in _chunks(order, padded, chunk_pairs):
            self._pairs_chunk(batch, frac, ptr, n_img, torch.as_tensor(chunk, device=self.device), rc, out,
                              int(counts[chunk].max()), reach[chunk].max(0).tolist(), int(counts.sum()))

        def cat(key: str, dtype: torch.dtype, width: tuple[int, ...] = ()) -> torch.Tensor:
            if not out[key]:
                return torch.zeros((0, *width), dtype=dtype, device=self.device)
            return torch.cat(out[key]).to(dtype)

        i, j, s_idx = cat("i", torch.long), cat("j", torch.long), cat("s", torch.long)
        shift = cat("shift", self.dtype, (3,))
        m, k_system = self._kvectors(batch.cells)
        # every atom of a structure against every k-vector of the same structure
        S = batch.n_systems
        k_counts = torch.bincount(k_system, minlength=S)
        k_ptr = segment_ranges(k_counts)
        n_ak = batch.counts * k_counts
        total = int((counts * k_counts.cpu().numpy()).sum())
        ak_sys = torch.repeat_interleave(torch.arange(S, device=self.device), n_ak, output_size=total)
        local = torch.arange(total, device=self.device) - segment_ranges(n_ak)[:-1][ak_sys]
        n_k = (k_ptr[1:] - k_ptr[:-1])[ak_sys]
        ak_atom = ptr[:-1][ak_sys] + torch.div(local, n_k, rounding_mode="floor")
        ak_k = k_ptr[:-1][ak_sys] + local % n_k
        return Neighbours(i, j, shift, s_idx, m, k_system, ak_atom, ak_k)

    def _pairs_chunk(self, batch: Batch, frac, ptr, n_img, systems: torch.Tensor, rc: float, out: dict, nmax: int,
                     reach: list[int], n_atoms: int) -> None:
        """Pairs of some structures, padded to their largest (``nmax`` atoms, ``reach`` images each way);
        |Δr + T|² expanded so no [..,3] temporaries."""
        dev = self.device
        counts = batch.counts[systems]
        ranges = [torch.arange(-x, x + 1, device=dev) for x in reach]
        images = torch.cartesian_prod(*ranges).to(self.dtype)  # [I,3]
        local = torch.arange(nmax, device=dev)
        valid = local[None, :] < counts[:, None]  # [C,n]
        idx = (ptr[systems, None] + local[None, :]).clamp(max=n_atoms - 1)
        cells = batch.cells[systems]
        f, r = frac[idx], batch.positions[idx]
        base = -torch.round(f[:, None, :, :] - f[:, :, None, :])  # [C,i,j,3]: the image of j nearest to i
        # per structure these are real matrix products (n² pair vectors by the cell, by the images): einsum
        dr = r[:, None, :, :] - r[:, :, None, :] + torch.einsum("cijk,ckm->cijm", base, cells)
        t = torch.einsum("Ik,ckm->cIm", images, cells)  # [C,I,3]
        dist2 = ((dr * dr).sum(-1)[..., None] + (t * t).sum(-1)[:, None, None, :]
                 + 2.0 * torch.einsum("cijm,cIm->cijI", dr, t))
        in_range = (images.abs()[None] <= n_img[systems, None, :]).all(-1)  # [C,I]
        upper = (local[:, None] < local[None, :])[None, :, :, None]
        same = (local[:, None] == local[None, :])[None, :, :, None] & _positive(images)  # one of each ±shift self-image
        keep = ((upper | same) & (dist2 <= rc * rc) & in_range[:, None, None, :]
                & (valid[:, :, None] & valid[:, None, :])[..., None])
        c, a, b, img = torch.nonzero(keep, as_tuple=True)
        out["i"].append(ptr[systems][c] + a)
        out["j"].append(ptr[systems][c] + b)
        out["shift"].append(base[c, a, b] + images[img])
        out["s"].append(systems[c])

    def _kvectors(self, cells: torch.Tensor, chunk: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer triples m > 0 (lexicographically) with |k| ≤ kmax (+ the skin's margin) for every cell.

        |m_a| ≤ kmax·|a_a| / 2π bounds each cell's grid; cells are taken in chunks of similar grids, since one
        long cell would otherwise size the grid of the whole batch.
        """
        recip = 2.0 * math.pi * inv3(cells).transpose(1, 2)  # rows b_i
        kcut = self.kmax * (1.0 + self.skin / self.cutoff)
        n = torch.ceil(kcut * torch.linalg.norm(cells, dim=2) / (2.0 * math.pi)).long()
        reach = n.cpu().numpy()  # grids are built on the host: no synchronisation per chunk on a GPU
        sizes = (2 * reach + 1).prod(1)
        ms, ss = [], []
        for chunk_idx in _chunks(np.argsort(-sizes, kind="stable"), lambda c: len(c) * sizes[c].max(), chunk):
            sys_idx = torch.as_tensor(chunk_idx, device=self.device)
            axes = np.meshgrid(*[np.arange(-x, x + 1) for x in reach[chunk_idx].max(0)], indexing="ij")
            grid = np.stack(axes, -1).reshape(-1, 3)
            grid = torch.as_tensor(grid[_positive(grid)], dtype=self.dtype, device=self.device)
            k = vecmat(grid[None], recip[sys_idx][:, None])
            ok = ((k * k).sum(-1) <= kcut ** 2) & (grid.abs()[None] <= n[sys_idx, None, :]).all(-1)
            c, g = torch.nonzero(ok, as_tuple=True)
            ms.append(grid[g])
            ss.append(sys_idx[c])
        m, system = torch.cat(ms), torch.cat(ss)
        keep = torch.argsort(system, stable=True)  # k-vectors grouped by structure, as the atom–k products expect
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
