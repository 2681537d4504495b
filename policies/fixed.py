"""FUSE's fixed move distributions: Original (FUSE 1.04), Uniform (FUSE 1.06) and plain random.

Original and Uniform switch to FUSE's "melt" weights once ``melt_threshold`` steps have passed without a
downhill acceptance, and switch back after the next one (fuse.md section 2.5). Move 8 (GA) and 11 are
unimplemented in FUSE and were redrawn there, so they are simply absent here.
"""
from __future__ import annotations

from rlcsp.policies.base import ACTIONS, Policy, State

ORIGINAL_WEIGHTS = {1: 18, 2: 5, 3: 3, 4: 3, 5: 3, 6: 2, 7: 1}
UNIFORM_WEIGHTS = {a: 1 for a in ACTIONS}
MELT_WEIGHTS = {3: 1, 4: 1, 5: 1, 6: 2, 7: 3}


def _normalise(weights: dict[int, float], allowed: list[int]) -> dict[int, float]:
    """Condition the weights on the allowed moves; if none of them has weight, fall back to uniform."""
    total = sum(weights.get(a, 0.0) for a in allowed)
    if total <= 0:
        return {a: 1.0 / len(allowed) for a in allowed}
    return {a: weights.get(a, 0.0) / total for a in allowed}


class FixedPolicy(Policy):
    """A fixed weight table, with an optional melt table used after ``melt_threshold`` non-downhill steps."""

    def __init__(self, weights: dict[int, float], melt_weights: dict[int, float] | None = None,
                 melt_threshold: int = 500, name: str = "fixed"):
        self.weights = dict(weights)
        self.melt_weights = dict(melt_weights) if melt_weights else None
        self.melt_threshold = melt_threshold
        self.name = name

    def probabilities(self, state: State, allowed: list[int]) -> dict[int, float]:
        melted = self.melt_weights is not None and state.steps_since_downhill >= self.melt_threshold
        return _normalise(self.melt_weights if melted else self.weights, allowed)


def original(melt_threshold: int = 500) -> FixedPolicy:
    return FixedPolicy(ORIGINAL_WEIGHTS, MELT_WEIGHTS, melt_threshold, name="original")


def uniform(melt_threshold: int = 500) -> FixedPolicy:
    return FixedPolicy(UNIFORM_WEIGHTS, MELT_WEIGHTS, melt_threshold, name="uniform")


def random(melt_threshold: int = 500) -> FixedPolicy:
    return FixedPolicy(UNIFORM_WEIGHTS, None, melt_threshold, name="random")
