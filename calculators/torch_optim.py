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


def longest(d: Dofs, system: torch.Tensor, n: int) -> torch.Tensor:
    """Per structure, the longest atom (or cell-row) displacement of ``d`` [S]."""
    atoms = segment_max(torch.linalg.norm(d.atoms, dim=1), system, n)
    return torch.maximum(atoms, torch.linalg.norm(d.cell, dim=2).amax(1))


def cap_step(step: Dofs, maxstep: float, system: torch.Tensor, n: int) -> Dofs:
    """Scale each structure's step so no atom (or cell row) moves more than ``maxstep`` (ASE's rule)."""
    length = longest(step, system, n)
    factor = torch.where(length > maxstep, maxstep / length.clamp(min=1e-300), torch.ones_like(length))
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


def stack_dot(stack: Dofs, b: Dofs, system: torch.Tensor, n: int) -> torch.Tensor:
    """Per-structure inner products [m,S] of each of m stacked Dofs ([m,N,3], [m,S,3,3]) with ``b``."""
    atoms = (stack.atoms * b.atoms[None]).sum(-1).T  # [N,m]: summed into structures along the first dimension,
    # which inductor's CPU code generator handles for one structure too (along the second it fails there)
    out = torch.zeros((n, atoms.shape[1]), dtype=atoms.dtype, device=atoms.device).index_add(0, system, atoms)
    return out.T + (stack.cell * b.cell[None]).sum((-2, -1))


def combine(stack: Dofs, coef: torch.Tensor, system: torch.Tensor) -> Dofs:
    """Σ_i coef[i,s]·stack[i] per structure: coef [m,S].

    The sum runs over a contiguous last dimension: summed over the leading one, torch's reduction order follows
    the size of the rest, and a structure's step would change in its last bits with the batch around it.
    """
    last = lambda t: torch.movedim(t, 0, -1).contiguous().sum(-1)  # noqa: E731
    return Dofs(last(stack.atoms * coef[:, system, None]), last(stack.cell * coef[:, :, None, None]))


@dataclass
class LbfgsState:
    """The last ``memory`` (s, y) pairs of every structure, oldest first, and their inner products.

    A slot is valid per structure, so a structure admitted mid-run, or one whose curvature condition failed,
    simply has fewer pairs. The first step of each structure is steepest descent scaled by 1/alpha (ASE's 70).
    The products S·Y and Y·Y [S,m,m] are kept up to date one row and column per step, so that a step is the
    compact representation's few batched operations rather than the two-loop recursion's 2m dependent ones: the
    same direction up to rounding, and on a GPU a few dozen kernel launches instead of several hundred.
    """

    s: Dofs  # [m,N,3] and [m,S,3,3]
    y: Dofs
    sy: torch.Tensor  # [S,m,m]: s_i·y_j
    yy: torch.Tensor  # [S,m,m]: y_i·y_j
    valid: torch.Tensor  # [m,S] bool
    x_prev: Dofs
    g_prev: Dofs
    has_prev: torch.Tensor  # [S] bool

    @classmethod
    def new(cls, like: Dofs, n: int, memory: int = 20) -> LbfgsState:
        t = like.atoms
        stack = lambda: Dofs(t.new_zeros((memory, *t.shape)), t.new_zeros((memory, n, 3, 3)))  # noqa: E731
        return cls(stack(), stack(), t.new_zeros((n, memory, memory)), t.new_zeros((n, memory, memory)),
                   torch.zeros((memory, n), dtype=torch.bool, device=t.device), like.zeros_like(), like.zeros_like(),
                   torch.zeros(n, dtype=torch.bool, device=t.device))

    def take(self, atoms_idx: torch.Tensor, sys_idx: torch.Tensor) -> LbfgsState:
        pick = lambda d: Dofs(d.atoms[:, atoms_idx], d.cell[:, sys_idx])  # noqa: E731
        return LbfgsState(pick(self.s), pick(self.y), self.sy[sys_idx], self.yy[sys_idx], self.valid[:, sys_idx],
                          self.x_prev.take(atoms_idx, sys_idx), self.g_prev.take(atoms_idx, sys_idx),
                          self.has_prev[sys_idx])

    def join(self, other: LbfgsState) -> LbfgsState:
        """``other``'s structures after this one's."""
        cat = torch.cat
        both = lambda a, b: Dofs(cat([a.atoms, b.atoms], 1), cat([a.cell, b.cell], 1))  # noqa: E731
        return LbfgsState(both(self.s, other.s), both(self.y, other.y), cat([self.sy, other.sy]),
                          cat([self.yy, other.yy]), cat([self.valid, other.valid], 1), self.x_prev.join(other.x_prev),
                          self.g_prev.join(other.g_prev), cat([self.has_prev, other.has_prev]))

    def forget(self, mask: torch.Tensor) -> None:
        """Drop the history of the masked structures (after an uphill step)."""
        self.valid &= ~mask[None, :]

    def restart(self, mask: torch.Tensor) -> None:
        """Start the masked structures afresh when their variables change scale: no history, and no pair across
        the change (its s and y would mix the two scales, and as the newest pair it would set γ)."""
        self.forget(mask)
        self.has_prev &= ~mask

    def push(self, s: Dofs, y: Dofs, good: torch.Tensor, system: torch.Tensor, n: int) -> None:
        """Drop the oldest pair, append (s, y) as the newest, and extend S·Y and Y·Y by its row and column."""
        cat = torch.cat
        shift = lambda d, new: Dofs(cat([d.atoms[1:], new.atoms[None]]), cat([d.cell[1:], new.cell[None]]))  # noqa
        self.s, self.y = shift(self.s, s), shift(self.y, y)
        self.valid = cat([self.valid[1:], good[None]])
        s_y, y_s, y_y = (stack_dot(self.y, s, system, n).T, stack_dot(self.s, y, system, n).T,
                         stack_dot(self.y, y, system, n).T)  # [S,m] against the new stacks, the new pair last
        self.sy = _grown(self.sy, s_y, y_s)
        self.yy = _grown(self.yy, y_y, y_y)


def _grown(mat: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """[S,m,m] without its oldest row and column, with ``row`` and ``col`` [S,m] as the newest."""
    out = torch.nn.functional.pad(mat[:, 1:, 1:], (0, 1, 0, 1))
    out[:, -1, :] = row
    out[:, :, -1] = col
    return out


def lbfgs_step(state: LbfgsState, x: Dofs, grad: Dofs, system: torch.Tensor, n: int, maxstep: float = 0.2,
               alpha: float = 70.0) -> Dofs:
    """One L-BFGS step in the compact representation (Byrd, Nocedal & Schnabel 1994, eq. 2.6) with the
    Shanno-scaled initial Hessian γI; returns the capped displacement.

    H·g = γg + S·p + γY·q with a = Sᵀg, b = Yᵀg, q = −R⁻¹a, p = R⁻ᵀ((D + γYᵀY)R⁻¹a − γb), R the upper triangle of
    SᵀY and D its diagonal. An invalid slot has its row and column of R replaced by the identity's and its s and
    y zeroed in every product, so it drops out exactly as it would from the two-loop recursion.
    """
    s = Dofs(x.atoms - state.x_prev.atoms, x.cell - state.x_prev.cell)
    y = Dofs(grad.atoms - state.g_prev.atoms, grad.cell - state.g_prev.cell)
    sy = dot(s, y, system, n)
    good = state.has_prev & (sy > 1e-12)  # the curvature condition; otherwise the pair is left out
    state.push(s, y, good, system, n)
    v = state.valid.T.to(sy.dtype)  # [S,m]
    vv = v[:, :, None] * v[:, None, :]
    eye = torch.eye(v.shape[1], dtype=v.dtype, device=v.device)
    SY, YY = state.sy * vv, state.yy * vv
    R = torch.triu(SY) + torch.diag_embed(1.0 - v)
    D = torch.diagonal(SY, dim1=1, dim2=2)
    newest = state.valid[-1]
    gamma = torch.where(newest, state.sy[:, -1, -1] / state.yy[:, -1, -1].clamp(min=1e-300),
                        torch.full_like(sy, 1.0 / alpha))
    a = (stack_dot(state.s, grad, system, n).T * v)[:, :, None]  # [S,m,1]
    b = (stack_dot(state.y, grad, system, n).T * v)[:, :, None]
    r_a = torch.linalg.solve_triangular(R, a, upper=True)
    # products as sums of elementwise terms, not batched matmuls: a structure's step must not depend on how
    # many others share the batch (BLAS picks its kernels, and so its rounding, by the batch's shape)
    inner = (((D[:, :, None] * eye + gamma[:, None, None] * YY) * r_a.transpose(1, 2)).sum(-1, keepdim=True)
             - gamma[:, None, None] * b)
    p = torch.linalg.solve_triangular(R.transpose(1, 2), inner, upper=False)[..., 0]
    q = -r_a[..., 0]
    z = combine(state.s, (p * v).T, system)
    zy = combine(state.y, (gamma[:, None] * q * v).T, system)
    z = Dofs(gamma[system, None] * grad.atoms + z.atoms + zy.atoms,
             gamma[:, None, None] * grad.cell + z.cell + zy.cell)
    state.x_prev, state.g_prev = x, grad
    state.has_prev = torch.ones_like(state.has_prev)
    return cap_step(Dofs(-z.atoms, -z.cell), maxstep, system, n)


def select(mask: torch.Tensor, a: Dofs, b: Dofs, system: torch.Tensor) -> Dofs:
    """``a`` for the structures under ``mask`` [S], ``b`` for the others."""
    return Dofs(torch.where(mask[system, None], a.atoms, b.atoms), torch.where(mask[:, None, None], a.cell, b.cell))


@dataclass
class CgState:
    """Polak–Ribière conjugate gradients whose line search is a trial step and a secant step, then L-BFGS.

    GULP's staged relaxation in FUSE (``opti conj`` for ``maxcyc 50`` at ``stepmax 0.1``, then ``opti lbfgs``)
    walks a different path from the one L-BFGS takes from the same start, and so can end in another basin; this is
    that path's shape on the batched engine, for relaxer-fidelity studies, not GULP's exact line search. Each
    structure alternates a base point (new direction, trial step of at most ``maxstep``) and a trial point (the
    secant minimum along the direction, also capped), so a cycle costs two evaluations; after ``cycles`` cycles it
    continues with the L-BFGS state ``lbfgs``, which has gathered (s, y) pairs along the CG path.
    """

    d: Dofs
    g_base: Dofs
    e_base: torch.Tensor  # [S] energy at the base point
    alpha0: torch.Tensor  # [S] trial length of the line search in progress
    alpha: torch.Tensor  # [S] last secant length: the next trial's guess
    trial: torch.Tensor  # [S] bool: at a trial point
    has_prev: torch.Tensor  # [S] bool: d and g_base are the previous cycle's
    cycles: torch.Tensor  # [S] long
    lbfgs: LbfgsState

    @classmethod
    def new(cls, like: Dofs, n: int, alpha: float = 1.0 / 70.0) -> CgState:
        t = like.atoms
        zeros = torch.zeros(n, dtype=t.dtype, device=t.device)
        false = torch.zeros(n, dtype=torch.bool, device=t.device)
        return cls(like.zeros_like(), like.zeros_like(), zeros.clone(), zeros.clone(), torch.full_like(zeros, alpha),
                   false.clone(), false.clone(), torch.zeros(n, dtype=torch.long, device=t.device),
                   LbfgsState.new(like, n))

    def take(self, atoms_idx: torch.Tensor, sys_idx: torch.Tensor) -> CgState:
        return CgState(self.d.take(atoms_idx, sys_idx), self.g_base.take(atoms_idx, sys_idx), self.e_base[sys_idx],
                       self.alpha0[sys_idx], self.alpha[sys_idx], self.trial[sys_idx], self.has_prev[sys_idx],
                       self.cycles[sys_idx], self.lbfgs.take(atoms_idx, sys_idx))

    def join(self, other: CgState) -> CgState:
        cat = torch.cat
        return CgState(self.d.join(other.d), self.g_base.join(other.g_base), cat([self.e_base, other.e_base]),
                       cat([self.alpha0, other.alpha0]), cat([self.alpha, other.alpha]), cat([self.trial, other.trial]),
                       cat([self.has_prev, other.has_prev]), cat([self.cycles, other.cycles]),
                       self.lbfgs.join(other.lbfgs))

    def restart(self, mask: torch.Tensor) -> None:
        """Steepest descent from the current point for the masked structures (after an uphill cycle, or when
        the cell variables change scale)."""
        self.has_prev &= ~mask
        self.trial &= ~mask


def cg_step(state: CgState, grad: Dofs, energy: torch.Tensor, system: torch.Tensor, n: int,
            maxstep: float = 0.1) -> Dofs:
    """One evaluation's CG move per structure: the secant step at a trial point, a new trial at a base point."""
    t = state.trial
    # at a trial point: the minimum of the parabola through the base slope and this slope along d
    slope0 = dot(state.g_base, state.d, system, n)
    curv = (dot(grad, state.d, system, n) - slope0) / state.alpha0.clamp(min=1e-300)
    cap = maxstep / longest(state.d, system, n).clamp(min=1e-300)
    secant = torch.where(curv > 0, -slope0 / curv.clamp(min=1e-300), 2.0 * state.alpha0)
    secant = torch.minimum(secant.clamp(min=0.0), cap)
    finish = scale(secant - state.alpha0, state.d, system)
    # at a base point: Polak–Ribière+ direction (steepest descent when not downhill) and a capped trial step
    dg = Dofs(grad.atoms - state.g_base.atoms, grad.cell - state.g_base.cell)
    beta = (dot(grad, dg, system, n) / dot(state.g_base, state.g_base, system, n).clamp(min=1e-300)).clamp(min=0.0)
    beta = torch.where(state.has_prev, beta, torch.zeros_like(beta))
    steepest = Dofs(-grad.atoms, -grad.cell)
    d = axpy(beta, state.d, steepest, system)
    d = select(dot(d, grad, system, n) < 0, d, steepest, system)
    alpha0 = torch.minimum(state.alpha, maxstep / longest(d, system, n).clamp(min=1e-300))
    start = scale(alpha0, d, system)
    # bookkeeping: trial points finish their cycle, base points open one
    state.alpha = torch.where(t & (secant > 0), secant, state.alpha)
    state.cycles = state.cycles + t.long()
    state.has_prev = state.has_prev | t
    state.d = select(t, state.d, d, system)
    state.g_base = select(t, state.g_base, grad, system)
    state.e_base = torch.where(t, state.e_base, energy)
    state.alpha0 = torch.where(t, state.alpha0, alpha0)
    state.trial = ~t
    return select(t, finish, start, system)
