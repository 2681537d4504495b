"""The interface between the search loop and a move-selection policy (spec: policies.md).

The loop describes the walker with a :class:`State`, asks ``select`` for a move among the allowed ones,
reports each finished step with ``observe`` and calls ``update`` at episode ends. Moves are identified by
their FUSE numbers (1, 2, 3, 4, 5, 6, 7, 9, 10).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACTIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 9, 10)
ACTION_INDEX: dict[int, int] = {a: i for i, a in enumerate(ACTIONS)}


def softmax(h: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax with max-subtraction (no overflow); entries where ``mask`` is False get probability 0."""
    h = np.asarray(h, dtype=float)
    mask = np.ones(h.shape, dtype=bool) if mask is None else mask
    e = np.where(mask, np.exp(h - h[mask].max()), 0.0)
    return e / e.sum()


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats (0 log 0 = 0), as ``scipy.stats.entropy``."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class State:
    """What a policy may condition on: the current structure's energy and the walker's counters."""

    energy: float
    n_atoms: int
    max_atoms: int
    steps_since_downhill: int
    temperature: float
    last_move: int | None = None


@dataclass(frozen=True)
class Transition:
    """One finished search step. ``outcome`` is 'accepted', 'metropolis', 'rejected' or 'failed'."""

    state: State
    action: int
    next_state: State
    new_energy: float | None
    outcome: str
    unique: bool
    attempts: int
    info: dict[str, Any] = field(default_factory=dict)


class Policy(ABC):
    """Chooses moves. Subclasses define ``probabilities``; learning policies also ``observe``/``update``."""

    name: str = "policy"
    episode_length: int = 1

    @abstractmethod
    def probabilities(self, state: State, allowed: list[int]) -> dict[int, float]:
        """Probability of each allowed move in this state (sums to 1 over ``allowed``)."""

    def begin(self, initial_energies: list[float]) -> None:
        """Called once after the initial population with the energies per atom of its converged structures, in
        relaxation order. Learning policies fit z(E)'s mu0, sd0 and the smart penalty's E_high on them; a resumed
        run does not call it again, because ``state_dict`` carries the fit."""

    def select(self, state: State, allowed: list[int], rng: np.random.Generator) -> int:
        if not allowed:
            raise ValueError("no move is allowed")
        probs = self.probabilities(state, allowed)
        p = np.array([probs[a] for a in allowed], dtype=float)
        return int(allowed[rng.choice(len(allowed), p=p / p.sum())])

    def observe(self, transition: Transition) -> None:
        """Record a finished step (fixed policies ignore it)."""

    def update(self) -> None:
        """Learn from the episode that just ended (fixed policies do nothing)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
