"""Atom-exchange moves 1 (swap two), 9 (swap several) and 10 (shuffle), fuse.md §2.1.

For ionic systems each call draws which atoms take part: cations (p 4/9), anions (4/9) or any position (1/9),
and whether vacancies join in (p 1/2). With vacancies, every vacancy in the string is a candidate position. As in
FUSE, a draw whose value set C (the species, plus a vacancy per species when vacancies join) has fewer than two
entries is invalid for all three moves: FUSE skips it, so even under ``noop_moves`` move 10 never shuffles the
oxygens of Y2Ti2O7 among themselves.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from rlcsp.actions.base import Move, MoveContext
from rlcsp.exceptions import InvalidMove, NotApplicable
from rlcsp.csp.genome import VACANCY, Genome

_SUBSET_P = (4 / 9, 4 / 9, 1 / 9)  # cations, anions, any


class _Exchange(Move):
    """Shared draw of the exchange settings; subclasses say what to do with the chosen positions."""

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        string = np.array(genome.string)
        if np.unique(string).size < 2:
            raise NotApplicable(f"{self.name}: every position holds the same value")
        comp = ctx.composition
        if comp.system_type == "neutral":
            new = self._anywhere(string, ctx, rng, neutral=True)
        else:
            subset = int(rng.choice(3, p=_SUBSET_P))
            with_vacancies = bool(rng.integers(2))
            if subset == 2:
                new = self._anywhere(string, ctx, rng, neutral=False)
            else:
                species = comp.cations if subset == 0 else comp.anions
                values = species + [VACANCY] * len(species) if with_vacancies else species
                positions = np.flatnonzero(np.isin(string, values))
                if len(values) < 2:
                    raise InvalidMove(f"{self.name}: one candidate value under this draw")
                if not ctx.quirk("noop_moves") and np.unique(string[positions]).size < 2:
                    raise InvalidMove(f"{self.name}: the drawn candidates all hold the same value")
                new = self._among(string, positions, len(values), ctx, rng)
        return Genome(tuple(new), genome.instructions)

    @abstractmethod
    def _among(self, string: np.ndarray, positions: np.ndarray, n_values: int, ctx: MoveContext,
               rng: np.random.Generator) -> np.ndarray:
        """Exchange among the candidate positions (cation or anion subset); ``n_values`` is FUSE's ‖C‖."""

    @abstractmethod
    def _anywhere(self, string: np.ndarray, ctx: MoveContext, rng: np.random.Generator, neutral: bool) -> np.ndarray:
        """Exchange over the whole string ('any' subset, or a neutral system)."""


def _different_pair(values: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """Indices of two entries with different values, uniform over all such pairs.

    The first index is drawn with weight (number of entries of another value), the second uniformly among those.
    """
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    partners = len(values) - counts[inverse]
    first = int(rng.choice(len(values), p=partners / partners.sum()))
    second = int(rng.choice(np.flatnonzero(inverse != inverse[first])))
    return first, second


def _permute_subset(string: np.ndarray, positions: np.ndarray, rng: np.random.Generator,
                    avoid_identity: bool) -> np.ndarray:
    """Permute the values at ``positions``; optionally never the identity permutation."""
    order = rng.permutation(len(positions))
    while avoid_identity and len(positions) > 1 and (order == np.arange(len(positions))).all():
        order = rng.permutation(len(positions))
    new = string.copy()
    new[positions] = string[positions[order]]
    return new


class SwapTwo(_Exchange):
    """Move 1: swap the values at two positions."""

    name, number = "swap2", 1

    def _among(self, string, positions, n_values, ctx, rng):
        if len(positions) < 2:
            raise InvalidMove(f"{self.name}: fewer than two positions to swap under this draw")
        if ctx.quirk("noop_moves"):  # FUSE may pick two equal values: a no-op
            a, b = rng.choice(positions, 2, replace=False)
        else:
            i, j = _different_pair(string[positions], rng)
            a, b = positions[i], positions[j]
        return _swap(string, a, b)

    def _anywhere(self, string, ctx, rng, neutral):
        if ctx.quirk("swap_first_uniform"):  # FUSE: a uniform first position, then one of another value
            a = int(rng.integers(len(string)))
            b = int(rng.choice(np.flatnonzero(string != string[a])))
        else:
            a, b = _different_pair(string, rng)
        return _swap(string, a, b)


def _swap(string: np.ndarray, a: int, b: int) -> np.ndarray:
    new = string.copy()
    new[a], new[b] = string[b], string[a]
    return new


class SwapSeveral(_Exchange):
    """Move 9: permute the values at k random positions.

    FUSE draws k from 1 (always a no-op); the default mode starts at 2 and never uses the identity permutation.
    """

    name, number = "swap_several", 9

    def _among(self, string, positions, n_values, ctx, rng):
        n = len(positions)
        if n < 2:
            raise InvalidMove(f"{self.name}: fewer than two candidate positions under this draw")
        low = 1 if ctx.quirk("noop_moves") else 2
        k = int(rng.integers(low, max(low, n - 1) + 1))
        chosen = rng.choice(positions, k, replace=False)
        return _permute_subset(string, chosen, rng, avoid_identity=not ctx.quirk("noop_moves"))

    def _anywhere(self, string, ctx, rng, neutral):
        n = len(string)
        low = 0 if neutral and ctx.quirk("noop_moves") else 2
        k = int(rng.integers(low, n))
        chosen = rng.choice(n, k, replace=False)
        return _permute_subset(string, chosen, rng, avoid_identity=not ctx.quirk("noop_moves"))


class Shuffle(_Exchange):
    """Move 10: permute the values over all candidate positions (or the whole string)."""

    name, number = "shuffle", 10

    def _among(self, string, positions, n_values, ctx, rng):
        return _permute_subset(string, positions, rng, avoid_identity=not ctx.quirk("noop_moves"))

    def _anywhere(self, string, ctx, rng, neutral):
        return _permute_subset(string, np.arange(len(string)), rng, avoid_identity=not ctx.quirk("noop_moves"))
