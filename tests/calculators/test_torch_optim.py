"""The batched optimiser steps on a quadratic, where their behaviour is known exactly."""
from __future__ import annotations

import torch

from rlcsp.calculators.torch_optim import CgState, Dofs, LbfgsState, cg_step, dot, lbfgs_step, longest

SYSTEM = torch.tensor([0, 0, 1, 1, 1])  # two structures of 2 and 3 atoms
N_SYS = 2


def quadratic(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per structure an SPD matrix over its atom and cell variables and its minimum."""
    g = torch.Generator().manual_seed(seed)
    mats, minima = [], []
    for n_atoms in (2, 3):
        dim = 3 * n_atoms + 9
        q = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        mats.append(q @ q.T + dim * torch.eye(dim, dtype=torch.float64))
        minima.append(torch.randn(dim, generator=g, dtype=torch.float64))
    return mats, minima


def flat(x: Dofs) -> list[torch.Tensor]:
    return [torch.cat([x.atoms[SYSTEM == s].reshape(-1), x.cell[s].reshape(-1)]) for s in range(N_SYS)]


def unflat(vs: list[torch.Tensor]) -> Dofs:
    atoms = torch.cat([v[:-9].reshape(-1, 3) for v in vs])
    return Dofs(atoms, torch.stack([v[-9:].reshape(3, 3) for v in vs]))


def energy_and_grad(x: Dofs, mats, minima) -> tuple[torch.Tensor, Dofs]:
    deltas = [v - m for v, m in zip(flat(x), minima)]
    energy = torch.stack([0.5 * d @ a @ d for d, a in zip(deltas, mats)])
    return energy, unflat([a @ d for d, a in zip(deltas, mats)])


def test_cg_with_its_secant_line_search_solves_a_quadratic_in_dim_cycles():
    mats, minima = quadratic(0)
    x = unflat([torch.zeros_like(m) for m in minima])
    state = CgState.new(x, N_SYS)
    for _ in range(2 * 18):  # the larger structure has 18 variables; a cycle is two evaluations
        e, g = energy_and_grad(x, mats, minima)
        step = cg_step(state, g, e, SYSTEM, N_SYS, maxstep=1e6)
        x = Dofs(x.atoms + step.atoms, x.cell + step.cell)
    _, g = energy_and_grad(x, mats, minima)
    assert torch.sqrt(dot(g, g, SYSTEM, N_SYS)).max() < 1e-8
    assert state.cycles.tolist() == [18, 18]


def test_cg_steps_never_exceed_maxstep_and_still_descend():
    mats, minima = quadratic(1)
    x = unflat([torch.zeros_like(m) for m in minima])
    state = CgState.new(x, N_SYS)
    start, _ = energy_and_grad(x, mats, minima)
    for _ in range(40):
        e, g = energy_and_grad(x, mats, minima)
        step = cg_step(state, g, e, SYSTEM, N_SYS, maxstep=0.05)
        assert (longest(step, SYSTEM, N_SYS) <= 0.05 * (1 + 1e-12)).all()
        x = Dofs(x.atoms + step.atoms, x.cell + step.cell)
    end, _ = energy_and_grad(x, mats, minima)
    assert (end < 0.5 * start).all()


def two_loop(pairs: list[tuple[torch.Tensor, torch.Tensor, bool]], g: torch.Tensor, alpha: float = 70.0):
    """The textbook two-loop recursion on one structure's flat vectors, invalid pairs left out."""
    q, alphas = g.clone(), []
    for s, y, ok in reversed(pairs):
        a = (s @ q) / (s @ y) if ok else 0.0
        alphas.append(a)
        q = q - a * y
    s, y, ok = pairs[-1]
    z = (s @ y) / (y @ y) * q if ok else q / alpha
    for (s, y, ok), a in zip(pairs, reversed(alphas)):
        if ok:
            z = z + (a - (y @ z) / (s @ y)) * s
    return -z


def test_compact_lbfgs_steps_equal_the_two_loop_recursion():
    """Seven steps through a memory of three (the history wraps), one structure forgetting its history midway."""
    mats, minima = quadratic(2)
    x = unflat([torch.zeros_like(m) for m in minima])
    state = LbfgsState.new(x, N_SYS, memory=3)
    history = [[], []]
    prev = None
    for step in range(7):
        e, g = energy_and_grad(x, mats, minima)
        if step == 4:
            state.forget(torch.tensor([False, True]))
            history[1] = [(s, y, False) for s, y, _ in history[1]]
        move = lbfgs_step(state, x, g, SYSTEM, N_SYS, maxstep=1e6)
        for k, (xk, gk) in enumerate(zip(flat(x), flat(g))):
            if prev is not None:
                s, y = xk - prev[0][k], gk - prev[1][k]
                history[k] = (history[k] + [(s, y, bool(s @ y > 1e-12))])[-3:]
            expected = two_loop(history[k], gk) if history[k] else -gk / 70.0
            assert torch.allclose(flat(move)[k], expected, rtol=1e-9, atol=1e-12), (step, k)
        prev = (flat(x), flat(g))
        x = Dofs(x.atoms + move.atoms, x.cell + move.cell)
