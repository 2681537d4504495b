"""The structures a batched relaxation has in flight, as one state (TorchSim's batched state).

Atoms of all structures are concatenated and every per-structure quantity is a row, so retiring finished
structures (``take``) and admitting queued ones (``merge``) are gathers and concatenations, the pair lists and the
optimiser's history included.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlcsp.calculators.torch_buckingham import Batch, Neighbours
from rlcsp.calculators.torch_linalg import matmul3, vecmat
from rlcsp.calculators.torch_optim import CgState, FireState, LbfgsState


@dataclass
class Flight:
    """The structures in flight: model batch, filter variables, optimiser state and bookkeeping per structure."""

    batch: Batch
    nbrs: Neighbours
    u: torch.Tensor  # [N,3] positions in the reference frame
    F: torch.Tensor  # [S,3,3] deformation gradient
    H0: torch.Tensor  # [S,3,3] reference cells
    r_ref: torch.Tensor  # [N,3] positions when the pair list was built
    H_ref: torch.Tensor  # [S,3,3] cells when the pair list was built
    e0: torch.Tensor  # [S] first energy as GULP defines it, without the exponential inside the inner cut
    e_prev: torch.Tensor
    opened: torch.Tensor  # [S] bool: the stress has come below open_gpa once
    hold: torch.Tensor  # [S] bool: the atoms keep their fractional coordinates while opening (a pair in a well)
    steps: torch.Tensor
    done: torch.Tensor  # [S] bool: frozen until the next swap
    reason: torch.Tensor  # [S] 0 converged, 1 exploded, 2 step cap
    energy: torch.Tensor
    dmin: torch.Tensor
    state: FireState | LbfgsState | CgState
    index: list[int]  # input position of each structure
    held: bool  # on the host: whether any structure may still be held, so that a release check can find one
    graphs: tuple | None = None  # the relaxer's captured step (FlightGraph); () once warm, None after a refill

    def at(self, r: torch.Tensor, H: torch.Tensor) -> Batch:
        """The model batch of these structures at positions ``r`` and cells ``H``."""
        b = self.batch
        return Batch(r, H, b.species, b.system, b.counts)

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current Cartesian positions and cells: r = u·Fᵀ, H = H0·Fᵀ."""
        Ft = self.F.transpose(1, 2)
        return vecmat(self.u, Ft[self.batch.system]), matmul3(self.H0, Ft)

    @classmethod
    def new(cls, batch: Batch, nbrs: Neighbours, state: FireState | LbfgsState | CgState, index: list[int],
            inner: torch.Tensor, hold: torch.Tensor) -> Flight:
        """Structures about to take their first step: undeformed, unopened, nothing done; ``e0`` holds minus the
        exponential inside the inner cut (``inner`` [S]) until the first energy is added to it."""
        S, dev, dt = batch.n_systems, batch.positions.device, batch.positions.dtype
        eye = torch.eye(3, dtype=dt, device=dev).expand(S, 3, 3).clone()
        zeros = lambda dtype=dt: torch.zeros(S, dtype=dtype, device=dev)  # noqa: E731
        return cls(batch, nbrs, batch.positions.clone(), eye, batch.cells.clone(), batch.positions.clone(),
                   batch.cells.clone(), -inner, zeros(), zeros(torch.bool), hold, zeros(torch.long), zeros(torch.bool),
                   zeros(torch.long), zeros(), zeros(), state, list(index), bool(hold.any()))

    def take(self, keep: torch.Tensor) -> Flight:
        """The structures under ``keep``, renumbered."""
        b = self.batch
        atom_keep = keep[b.system]
        atom_idx, sys_idx = torch.nonzero(atom_keep).squeeze(1), torch.nonzero(keep).squeeze(1)
        atom_map = torch.full_like(b.system, -1)
        atom_map[atom_idx] = torch.arange(len(atom_idx), device=atom_map.device)
        sys_map = torch.full_like(b.counts, -1)
        sys_map[sys_idx] = torch.arange(len(sys_idx), device=sys_map.device)
        batch = Batch(b.positions[atom_idx], b.cells[sys_idx], b.species[atom_idx], sys_map[b.system[atom_idx]],
                      b.counts[sys_idx])
        per_sys = ("H0", "H_ref", "e0", "e_prev", "opened", "hold", "steps", "done", "reason", "energy", "dmin", "F")
        fields = {name: getattr(self, name)[sys_idx] for name in per_sys}
        return Flight(batch=batch, nbrs=self.nbrs.remap(atom_map, sys_map), u=self.u[atom_idx],
                      r_ref=self.r_ref[atom_idx], state=self.state.take(atom_idx, sys_idx),
                      index=[self.index[s] for s in sys_idx.tolist()], held=self.held, **fields)

    def merge(self, b: Flight) -> Flight:
        """One flight from two; ``b``'s atoms and structures are numbered after this one's."""
        a = self
        n_atoms, n_sys = len(a.u), a.batch.n_systems
        cat = torch.cat
        batch = Batch(cat([a.batch.positions, b.batch.positions]), cat([a.batch.cells, b.batch.cells]),
                      cat([a.batch.species, b.batch.species]), cat([a.batch.system, b.batch.system + n_sys]),
                      cat([a.batch.counts, b.batch.counts]))
        shifted = b.nbrs.remap(torch.arange(len(b.u), device=b.u.device) + n_atoms,
                               torch.arange(b.batch.n_systems, device=b.u.device) + n_sys)
        per = ("u", "r_ref", "H0", "H_ref", "e0", "e_prev", "opened", "hold", "steps", "done", "reason", "energy",
               "dmin", "F")
        fields = {name: cat([getattr(a, name), getattr(b, name)]) for name in per}
        return Flight(batch=batch, nbrs=a.nbrs.join(shifted), state=a.state.join(b.state),
                      index=a.index + b.index, held=a.held or b.held, **fields)
