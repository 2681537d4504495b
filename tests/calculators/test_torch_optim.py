"""The batched optimiser steps on a quadratic, where their behaviour is known exactly."""
from __future__ import annotations

import torch

from rlcsp.calculators.torch_optim import CgState, Dofs, cg_step, dot, longest

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
