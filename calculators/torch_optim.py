"""Batched optimiser steps on concatenated structures: one step function per optimiser (TorchSim's pattern).

The variables are a unit-cell filter's (ASE ``UnitCellFilter``): positions ``u`` in the frame of a reference cell
H0 and a deformation gradient F per structure, scaled by its atom count so cell and atom steps have comparable
size; r = u·Fᵀ, H = H0·Fᵀ. Every per-structure reduction is a segment sum over ``system``, so no padding and a
structure's step never depends on the others in the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Dofs:
    """Gradient-like pairs for one batch: per-atom [N,3] and per-structure cell [S,3,3] parts."""

    atoms: torch.Tensor
    cell: torch.Tensor

    def zeros_like(self) -> Dofs:
        return Dofs(torch.zeros_like(self.atoms), torch.zeros_like(self.cell))

    def take(self, atoms_idx: torch.Tensor, sys_idx: torch.Tensor) -> Dofs:
        """The rows of some structures: their atoms' and their cells'."""
        return Dofs(self.atoms[atoms_idx], self.cell[sys_idx])

    def join(self, other: Dofs) -> Dofs:
        """``other``'s structures after this one's."""
        return Dofs(torch.cat([self.atoms, other.atoms]), torch.cat([self.cell, other.cell]))


def dot(a: Dofs, b: Dofs, system: torch.Tensor, n: int) -> torch.Tensor:
    """Per-structure inner products [S]."""
    out = torch.zeros(n, dtype=a.atoms.dtype, device=a.atoms.device).index_add(0, system, (a.atoms * b.atoms).sum(-1))
    return out + (a.cell * b.cell).sum((1, 2))


def segment_max(values: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    """The largest of non-negative ``values`` in each of ``n`` segments (structures), 0 for an empty one."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).scatter_reduce(0, segment, values, "amax")


def axpy(alpha: torch.Tensor, x: Dofs, y: Dofs, system: torch.Tensor) -> Dofs:
    """y + alpha·x with a per-structure alpha [S]."""
    return Dofs(y.atoms + alpha[system, None] * x.atoms, y.cell + alpha[:, None, None] * x.cell)


def scale(alpha: torch.Tensor, x: Dofs, system: torch.Tensor) -> Dofs:
    return Dofs(alpha[system, None] * x.atoms, alpha[:, None, None] * x.cell)


def cap_step(step: Dofs, maxstep: float, system: torch.Tensor, n: int) -> Dofs:
    """Scale each structure's step so no atom (or cell row) moves more than ``maxstep`` (ASE's rule)."""
    longest = torch.maximum(segment_max(torch.linalg.norm(step.atoms, dim=1), system, n),
                            torch.linalg.norm(step.cell, dim=2).amax(1))
    factor = torch.where(longest > maxstep, maxstep / longest.clamp(min=1e-300), torch.ones_like(longest))
    return scale(factor, step, system)


@dataclass
class FireState:
    """ASE's FIRE per structure: velocities, time step, mixing and the count of downhill steps."""

    v: Dofs
    dt: torch.Tensor
    a: torch.Tensor
    n_pos: torch.Tensor

    @classmethod
    def new(cls, like: Dofs, n: int, dt: float = 0.1, a: float = 0.1) -> FireState:
        t = like.atoms
        return cls(like.zeros_like(), torch.full((n,), dt, dtype=t.dtype, device=t.device),
                   torch.full((n,), a, dtype=t.dtype, device=t.device),
                   torch.zeros(n, dtype=torch.long, device=t.device))

    def take(self, atoms_idx: torch.Tensor, sys_idx: torch.Tensor) -> FireState:
        return FireState(self.v.take(atoms_idx, sys_idx), self.dt[sys_idx], self.a[sys_idx], self.n_pos[sys_idx])

    def join(self, other: FireState) -> FireState:
        cat = torch.cat
        return FireState(self.v.join(other.v), cat([self.dt, other.dt]), cat([self.a, other.a]),
                         cat([self.n_pos, other.n_pos]))


def fire_step(state: FireState, force: Dofs, system: torch.Tensor, n: int, maxstep: float = 0.2,
              dtmax: float = 1.0, nmin: int = 5, finc: float = 1.1, fdec: float = 0.5, astart: float = 0.1,
              fa: float = 0.99) -> Dofs:
    """One FIRE step (ASE's constants); returns the displacement and updates ``state`` in place."""
    vf = dot(force, state.v, system, n)
    downhill = vf > 0.0
    vnorm = torch.sqrt(dot(state.v, state.v, system, n))
    fnorm = torch.sqrt(dot(force, force, system, n)).clamp(min=1e-300)
    mix = torch.where(downhill, state.a, torch.zeros_like(state.a))
    keep = torch.where(downhill, 1.0 - state.a, torch.zeros_like(state.a))
    state.v = axpy(mix * vnorm / fnorm, force, scale(keep, state.v, system), system)
    grow = downhill & (state.n_pos > nmin)
    state.dt = torch.where(grow, torch.clamp(state.dt * finc, max=dtmax),
                           torch.where(downhill, state.dt, state.dt * fdec))
    state.a = torch.where(grow, state.a * fa, torch.where(downhill, state.a, torch.full_like(state.a, astart)))
    state.n_pos = torch.where(downhill, state.n_pos + 1, torch.zeros_like(state.n_pos))
    state.v = axpy(state.dt, force, state.v, system)
    step = scale(state.dt, state.v, system)
    norm = torch.sqrt(dot(step, step, system, n))
    return scale(torch.where(norm > maxstep, maxstep / norm.clamp(min=1e-300), torch.ones_like(norm)), step, system)


@dataclass
class LbfgsState:
    """The last ``memory`` (s, y) pairs of every structure, in one ring shared by the batch.

    A slot is valid per structure, so a structure admitted mid-run, or one whose curvature condition failed,
    simply has fewer pairs. The first step of each structure is steepest descent scaled by 1/alpha (ASE's 70).
    """

    s: list[Dofs]
    y: list[Dofs]
    rho: torch.Tensor  # [m,S]
    valid: torch.Tensor  # [m,S] bool
    x_prev: Dofs
    g_prev: Dofs
    has_prev: torch.Tensor  # [S] bool
    head: int = 0

    @classmethod
    def new(cls, like: Dofs, n: int, memory: int = 20) -> LbfgsState:
        t = like.atoms
        return cls([like.zeros_like() for _ in range(memory)], [like.zeros_like() for _ in range(memory)],
                   torch.zeros((memory, n), dtype=t.dtype, device=t.device),
                   torch.zeros((memory, n), dtype=torch.bool, device=t.device), like.zeros_like(),
                   like.zeros_like(), torch.zeros(n, dtype=torch.bool, device=t.device))

    def take(self, atoms_idx: torch.Tensor, sys_idx: torch.Tensor) -> LbfgsState:
        pick = lambda d: d.take(atoms_idx, sys_idx)  # noqa: E731
        return LbfgsState([pick(d) for d in self.s], [pick(d) for d in self.y], self.rho[:, sys_idx],
                          self.valid[:, sys_idx], pick(self.x_prev), pick(self.g_prev), self.has_prev[sys_idx],
                          self.head)

    def join(self, other: LbfgsState) -> LbfgsState:
        """``other`` must be fresh (no history): its slots are invalid, so the ring positions need not agree."""
        cat = torch.cat
        return LbfgsState([a.join(b) for a, b in zip(self.s, other.s)], [a.join(b) for a, b in zip(self.y, other.y)],
                          cat([self.rho, other.rho], 1), cat([self.valid, other.valid], 1),
                          self.x_prev.join(other.x_prev), self.g_prev.join(other.g_prev),
                          cat([self.has_prev, other.has_prev]), self.head)

    def forget(self, mask: torch.Tensor) -> None:
        """Drop the history of the masked structures (after an uphill step)."""
        self.valid &= ~mask[None, :]


def lbfgs_step(state: LbfgsState, x: Dofs, grad: Dofs, system: torch.Tensor, n: int, maxstep: float = 0.2,
               alpha: float = 70.0) -> Dofs:
    """One L-BFGS step (two-loop recursion, Shanno-scaled initial Hessian); returns the capped displacement."""
    s = Dofs(x.atoms - state.x_prev.atoms, x.cell - state.x_prev.cell)
    y = Dofs(grad.atoms - state.g_prev.atoms, grad.cell - state.g_prev.cell)
    sy = dot(s, y, system, n)
    good = state.has_prev & (sy > 1e-12)  # the curvature condition; otherwise the pair is left out
    k = state.head
    state.s[k], state.y[k] = s, y
    state.rho[k] = torch.where(good, 1.0 / sy.clamp(min=1e-300), torch.zeros_like(sy))
    state.valid[k] = good
    state.head = (k + 1) % len(state.s)
    m = len(state.s)
    order = [(state.head - 1 - i) % m for i in range(m)]  # newest first
    q = grad
    alphas = {}
    for k in order:
        a = torch.where(state.valid[k], state.rho[k] * dot(state.s[k], q, system, n), torch.zeros_like(state.rho[k]))
        alphas[k] = a
        q = axpy(-a, state.y[k], q, system)
    newest = order[0]
    yy = dot(state.y[newest], state.y[newest], system, n)
    gamma = torch.where(state.valid[newest], 1.0 / (state.rho[newest] * yy).clamp(min=1e-300),
                        torch.full_like(yy, 1.0 / alpha))
    z = scale(gamma, q, system)
    for k in reversed(order):
        b = torch.where(state.valid[k], state.rho[k] * dot(state.y[k], z, system, n), torch.zeros_like(state.rho[k]))
        z = axpy(alphas[k] - b, state.s[k], z, system)
    state.x_prev, state.g_prev = x, grad
    state.has_prev = torch.ones_like(state.has_prev)
    return cap_step(Dofs(-z.atoms, -z.cell), maxstep, system, n)
