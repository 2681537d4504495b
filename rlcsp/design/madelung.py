"""Madelung site potentials of point charges on a fixed lattice: what tells one arrangement of a formula from another.

Why: on the elpasolite skeleton one formula's arrangements differ in DFT gap by 0.65 eV (median range over 20
formulas), wider than the ±0.25 eV target window, and elemental statistics of sites and orbits cannot see where
each ion sits. In the point-ion picture of an ionic crystal the valence band is the anions' levels lowered by the
positive potential at their sites and the conduction band the cations' levels raised by the negative potential at
theirs, so the site potentials of the formal charges move the gap with the arrangement. The skeleton's lattice is
fixed, so the potential is ``M @ q``: ``M`` (one Ewald sum per skeleton) times the filling's charges.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.special import erfc

K_E = 14.3997584  # eV Å / e², Coulomb's constant (GULP's value)


def potential_matrix(cell: np.ndarray, positions: np.ndarray, accuracy: float = 1e-10) -> np.ndarray:
    """``M[i, j]``: the potential (V) at site i of a unit charge on site j and all its periodic images, the
    uniform background of a charged cell included (it cancels for neutral charges); ``M @ q`` are the site
    potentials of charges ``q``. Ewald sum, its splitting chosen for the cell and ``accuracy``."""
    cell, positions = np.asarray(cell, float), np.asarray(positions, float)
    n, volume = len(positions), abs(np.linalg.det(cell))
    alpha = math.sqrt(math.pi) * (n / volume ** 2) ** (1 / 6)  # balances the real and reciprocal sums
    p = math.sqrt(-math.log(accuracy))
    r_cut, g_cut = p / alpha, 2 * alpha * p
    d = positions[:, None, :] - positions[None, :, :]  # r_i - r_j
    m = np.zeros((n, n))
    # real space: every image within r_cut
    heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = np.ceil(r_cut / heights).astype(int)
    shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3) @ cell
    r = np.linalg.norm(d[:, :, None, :] + shifts[None, None], axis=-1)
    near = (r > 1e-9) & (r < r_cut)
    m += np.where(near, erfc(alpha * np.where(near, r, 1.0)) / np.where(near, r, 1.0), 0.0).sum(-1)
    # reciprocal space
    recip = 2 * math.pi * np.linalg.inv(cell).T
    reach = np.ceil(g_cut / np.linalg.norm(recip, axis=1)).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3) @ recip
    g2 = (g ** 2).sum(-1)
    g, g2 = g[(g2 > 1e-12) & (g2 < g_cut ** 2)], g2[(g2 > 1e-12) & (g2 < g_cut ** 2)]
    weight = 4 * math.pi / volume * np.exp(-g2 / (4 * alpha ** 2)) / g2
    m += (np.cos(d @ g.T) * weight).sum(-1)
    m -= math.pi / (volume * alpha ** 2)  # the background that neutralises a lone charge
    m -= np.eye(n) * 2 * alpha / math.sqrt(math.pi)  # a charge does not act on itself
    return K_E * m


def formal_charges(species: Sequence[str], roles: Sequence[int]) -> np.ndarray | None:
    """Each site's oxidation state: one common state per element, of its sites' role's sign, that balances the
    filling (rlcsp.design.chem_rules.common_states, first balancing choice in their order); None if none does."""
    counts: dict[tuple[str, int], int] = {}
    for symbol, role in zip(species, roles):
        counts[symbol, role] = counts.get((symbol, role), 0) + 1
    states = _balancing_states(tuple(sorted(counts.items())))
    return None if states is None else np.array([states[symbol, role] for symbol, role in zip(species, roles)], float)


@lru_cache(maxsize=4096)
def _balancing_states(counts: tuple[tuple[tuple[str, int], int], ...]) -> dict[tuple[str, int], int] | None:
    from rlcsp.design.chem_rules import common_states

    keys = [key for key, _ in counts]
    for choice in itertools.product(*(common_states(symbol, role) for symbol, role in keys)):
        if sum(n * state for (_, n), state in zip(counts, choice)) == 0:
            return dict(zip(keys, choice))
    return None
